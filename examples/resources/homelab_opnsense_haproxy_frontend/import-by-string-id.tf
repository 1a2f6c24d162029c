# The id is the frontend's UUID or its name.
import {
  to = homelab_opnsense_haproxy_frontend.k3s_controlplane
  id = "k3s-controlplane"
}
