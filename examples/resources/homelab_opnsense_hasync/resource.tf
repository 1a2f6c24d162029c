# The primary firewall syncs HAProxy, aliases, rules and the CARP VIPs to the secondary (10.0.9.2 on the sync
# link). Declare it once, against the primary. Terraform 1.0.3: the password is kept in state (sensitive).
variable "hasync_password" {
  type      = string
  sensitive = true
}

resource "homelab_opnsense_hasync" "this" {
  peer       = "https://10.0.9.2"
  username   = "hasync"
  password   = var.hasync_password
  sync_items = ["haproxy", "aliases", "rules", "virtualip"]
}
