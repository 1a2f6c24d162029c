# The admin kubeconfig of a server, pointed at the VIP, read in each plan and apply and never stored in the
# state (Terraform 1.10 or later). Here it configures the kubernetes provider.
ephemeral "homelab_k3s_kubeconfig" "cluster" {
  server = "https://10.0.3.100:6443"

  host {
    address = "10.0.3.2"
  }
}

locals {
  kube = yamldecode(ephemeral.homelab_k3s_kubeconfig.cluster.kubeconfig)
}

provider "kubernetes" {
  host                   = local.kube.clusters[0].cluster.server
  cluster_ca_certificate = base64decode(local.kube.clusters[0].cluster["certificate-authority-data"])
  client_certificate     = base64decode(local.kube.users[0].user["client-certificate-data"])
  client_key             = base64decode(local.kube.users[0].user["client-key-data"])
}
