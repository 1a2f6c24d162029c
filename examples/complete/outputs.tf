output "kubeconfig" {
  description = "Admin kubeconfig through the VIP: terraform output -raw kubeconfig > kubeconfig.yaml"
  value       = module.k3s_ha.kubeconfig
  sensitive   = true
}

output "api_url" {
  value = module.k3s_ha.api_url
}

output "nodes" {
  value = module.k3s_ha.nodes
}

output "agent_lb_server_addresses" {
  value = module.k3s_ha.agent_lb_server_addresses
}

output "exporter_url" {
  value = module.k3s_ha.exporter_url
}
