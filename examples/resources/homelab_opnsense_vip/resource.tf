# The seed's VIP: an IP alias on the VLAN interface of the k3s cluster, found by
# the description the OPNsense UI shows for it.
data "homelab_opnsense_interfaces" "all" {}

resource "homelab_opnsense_vip" "k3s_api" {
  interface   = data.homelab_opnsense_interfaces.all.by_description["K3S"]
  mode        = "ipalias"
  address     = "10.0.3.100/32"
  description = "k3s control plane"
}

# A CARP address instead (for a pair of OPNsense boxes); `vhid` is picked when unset.
resource "homelab_opnsense_vip" "carp" {
  interface = "lan"
  mode      = "carp"
  address   = "192.168.1.250/24"
  password  = var.carp_password
}

variable "carp_password" {
  type      = string
  sensitive = true
}
