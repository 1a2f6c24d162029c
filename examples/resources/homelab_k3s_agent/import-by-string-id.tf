# The id is the host's address.
import {
  to = homelab_k3s_agent.k8s_worker_1
  id = "10.0.3.21"
}
