# An agent whose token never reaches terraform.tfstate (Terraform 1.11 or newer): the secure form composed from
# the first server's ca_hash and the cluster password, write-only, re-applied when token_wo_version changes.
# Terraform 1.0.3 users keep `token` (example above).
variable "k3s_token" {
  type      = string
  sensitive = true
  ephemeral = true
}

variable "cluster_ca_hash" {
  type        = string
  description = "The first server's ca_hash, e.g. homelab_k3s_server.k8s_control_1.ca_hash."
}

resource "homelab_k3s_agent" "k8s_worker_1" {
  server_url       = "https://10.0.3.100:6443"
  token_wo         = "K10${var.cluster_ca_hash}::server:${var.k3s_token}"
  token_wo_version = 1
  version          = "v1.31.5+k3s1"

  host {
    address = "10.0.3.10"
  }
}
