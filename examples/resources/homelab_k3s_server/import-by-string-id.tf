# The id is the host's address.
import {
  to = homelab_k3s_server.k8s_control_1
  id = "10.0.3.2"
}
