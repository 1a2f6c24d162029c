# The same control plane with nothing secret in terraform.tfstate (Terraform 1.11 or newer). The token is a
# write-only attribute: written to config.yaml on the hosts, never stored in plan or state, and re-applied only
# when token_wo_version changes. `join_token` and `kubeconfig` stay null; the kubeconfig comes from the
# ephemeral homelab_k3s_kubeconfig resource instead. Terraform 1.0.3 users keep `token` (example above).
variable "k3s_token" {
  type      = string
  sensitive = true
  ephemeral = true
}

resource "homelab_k3s_server" "k8s_control_1" {
  role              = "init"
  token_wo          = var.k3s_token
  token_wo_version  = 1
  version           = "v1.31.5+k3s1"
  tls_san           = ["10.0.3.100"]
  kubeconfig_server = "https://10.0.3.100:6443"

  host {
    address = "10.0.3.2"
  }
}

# A joining server pins the cluster CA like the secure token does: the secure form is composed in HCL from the
# first server's (non-secret) ca_hash and the password, so it exists only in memory during apply.
resource "homelab_k3s_server" "k8s_control_2" {
  role             = "join"
  server_url       = "https://10.0.3.2:6443"
  token_wo         = "K10${homelab_k3s_server.k8s_control_1.ca_hash}::server:${var.k3s_token}"
  token_wo_version = 1
  version          = "v1.31.5+k3s1"
  tls_san          = ["10.0.3.100"]

  host {
    address = "10.0.3.7"
  }
}

ephemeral "homelab_k3s_kubeconfig" "admin" {
  server = "https://10.0.3.100:6443"

  host {
    address = homelab_k3s_server.k8s_control_1.id # known once the server exists
  }
}
