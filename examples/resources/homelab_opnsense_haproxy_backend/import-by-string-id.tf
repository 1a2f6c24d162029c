# The id is the backend's UUID or its name.
import {
  to = homelab_opnsense_haproxy_backend.k3s_controlplane
  id = "k3s-controlplane"
}
