data "homelab_opnsense_interfaces" "all" {}

# The key (`opt2`, ...) of the interface the OPNsense UI calls "K3S".
output "k3s_interface" {
  value = data.homelab_opnsense_interfaces.all.by_description["K3S"]
}
