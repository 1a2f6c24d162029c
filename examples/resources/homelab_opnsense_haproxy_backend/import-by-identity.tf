import {
  to = homelab_opnsense_haproxy_backend.k3s_controlplane
  identity = {
    id = "0b9d4c2e-6a71-4f3b-8e05-c1d2a3b4e5f6"
  }
}
