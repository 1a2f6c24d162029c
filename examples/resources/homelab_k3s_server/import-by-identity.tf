import {
  to = homelab_k3s_server.k8s_control_1
  identity = {
    address = "10.0.3.2"
  }
}
