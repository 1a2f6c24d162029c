output "kubeconfig" {
  description = "Admin kubeconfig whose server is the VIP."
  value       = homelab_k3s_server.first.kubeconfig
  sensitive   = true
}

output "api_url" {
  description = "The Kubernetes API through the VIP."
  value       = local.vip_url
}

output "nodes" {
  description = "Every node: name => { address, role }."
  value = merge(
    { (local.first_name) = { address = homelab_k3s_server.first.id, role = "server (cluster-init)" } },
    { for name, s in homelab_k3s_server.join : name => { address = s.id, role = "server" } },
    { for name, a in homelab_k3s_agent.this : name => { address = a.id, role = "agent" } },
  )
}

output "agent_lb_server_addresses" {
  description = "The servers each agent's client-side load balancer really uses."
  value       = { for name, a in homelab_k3s_agent.this : name => a.lb_server_addresses }
}

output "exporter_url" {
  description = "HAProxy's Prometheus exporter."
  value       = "http://${var.vip}:${var.exporter_port}/metrics"
}
