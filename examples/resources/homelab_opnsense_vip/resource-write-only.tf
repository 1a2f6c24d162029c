# The CARP VIP with its password kept out of plan and state (Terraform 1.11 or newer): `password_wo` is sent to
# the firewall on create and whenever `password_wo_version` changes, never stored, never read back. Terraform
# 1.0.3 users keep `password` (sensitive, in state; the example above).
variable "carp_password" {
  type      = string
  sensitive = true
  ephemeral = true
}

resource "homelab_opnsense_vip" "k3s_api" {
  interface           = "opt1"
  mode                = "carp"
  address             = "10.0.3.100/24"
  vhid                = 3
  advskew             = 0 # the secondary firewall uses a higher skew: it takes over only when this one is gone
  password_wo         = var.carp_password
  password_wo_version = 1
  description         = "k3s control plane"
}
