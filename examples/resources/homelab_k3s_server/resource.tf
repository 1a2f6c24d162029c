# The seed's control plane: the first server bootstraps embedded etcd, the others join through it (never through
# the VIP, whose pool would contain themselves), and every server carries the VIP as a SAN.
variable "k3s_token" {
  type      = string
  sensitive = true
}

resource "homelab_k3s_server" "k8s_control_1" {
  role              = "init"
  token             = var.k3s_token
  version           = "v1.31.5+k3s1"
  node_name         = "k8s-control-1"
  tls_san           = ["10.0.3.100"]
  disable           = ["servicelb"]
  kubeconfig_server = "https://10.0.3.100:6443"
  # Imported from a hand install still on sqlite? This converts it to embedded etcd in place (backup first).
  # allow_datastore_migration = true

  host {
    address = "10.0.3.2"
  }
}

resource "homelab_k3s_server" "k8s_control_2" {
  role       = "join"
  server_url = "https://10.0.3.2:6443"
  token      = homelab_k3s_server.k8s_control_1.join_token
  version    = "v1.31.5+k3s1"
  node_name  = "k8s-control-2"
  tls_san    = ["10.0.3.100"]
  disable    = ["servicelb"]

  host {
    address = "10.0.3.7"
  }
}
