# The same with the HA user's password out of plan and state (Terraform 1.11 or newer): sent on create and
# whenever password_wo_version changes, never read back.
variable "hasync_password" {
  type      = string
  sensitive = true
  ephemeral = true
}

resource "homelab_opnsense_hasync" "this" {
  peer                = "https://10.0.9.2"
  username            = "hasync"
  password_wo         = var.hasync_password
  password_wo_version = 1
  sync_items          = ["haproxy", "aliases", "rules", "virtualip"]
}
