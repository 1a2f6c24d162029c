data "homelab_opnsense_haproxy_status" "this" {}

# Which control-plane servers haproxy currently sends traffic to.
output "k3s_api_servers_up" {
  value = [
    for s in data.homelab_opnsense_haproxy_status.this.servers : s.name
    if s.backend == "k3s-controlplane" && s.up
  ]
}

output "haproxy_running" {
  value = data.homelab_opnsense_haproxy_status.this.running
}
