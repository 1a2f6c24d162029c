import {
  to = homelab_opnsense_haproxy_frontend.k3s_controlplane
  identity = {
    id = "5e8a1f3c-9b24-4d6e-b7a0-3c2d1e0f9a8b"
  }
}
