import {
  to = homelab_k3s_agent.k8s_worker_1
  identity = {
    address = "10.0.3.21"
  }
}
