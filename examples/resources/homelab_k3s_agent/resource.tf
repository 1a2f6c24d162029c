# A worker registers through the VIP; afterwards it balances over the servers itself (see lb_server_addresses).
# Upgrades: change `version` on servers and agents together; when the agent references the servers (its token
# comes from them, or depends_on), Terraform upgrades the servers first, then the agents, as Kubernetes requires.
variable "k3s_join_token" {
  type      = string
  sensitive = true
}

resource "homelab_k3s_agent" "k8s_worker_1" {
  server_url  = "https://10.0.3.100:6443"
  token       = var.k3s_join_token
  version     = "v1.31.5+k3s1"
  node_name   = "k8s-worker-1"
  node_labels = ["tier=worker"]

  host {
    address = "10.0.3.21"
    user    = "ops"
  }
}

output "worker_1_servers" {
  value = homelab_k3s_agent.k8s_worker_1.lb_server_addresses
}
