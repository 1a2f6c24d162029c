# The admin kubeconfig of a server, pointed at the VIP, e.g. for the kubernetes or helm providers.
data "homelab_k3s_kubeconfig" "cluster" {
  server = "https://10.0.3.100:6443"

  host {
    address = "10.0.3.2"
  }
}

output "kubeconfig" {
  value     = data.homelab_k3s_kubeconfig.cluster.kubeconfig
  sensitive = true
}
