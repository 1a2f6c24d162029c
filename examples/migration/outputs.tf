output "datastore" {
  description = "k8s-control-1's datastore as read from the host (etcd after step 2; null before it is managed)."
  value       = one(homelab_k3s_server.k8s_control_1[*].datastore)
}

output "kubeconfig" {
  description = "Admin kubeconfig through the VIP (after step 2)."
  value       = one(homelab_k3s_server.k8s_control_1[*].kubeconfig)
  sensitive   = true
}

output "api_url" {
  description = "The Kubernetes API through the VIP."
  value       = local.vip_url
}

output "agent_lb_server_addresses" {
  description = "The servers each agent's client-side load balancer really uses."
  value       = { for name, a in homelab_k3s_agent.worker : name => a.lb_server_addresses }
}

output "exporter_url" {
  description = "HAProxy's Prometheus exporter."
  value       = "http://${local.vip}:8404/metrics"
}
