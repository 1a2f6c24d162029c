import {
  to = homelab_opnsense_vip.k3s_api
  identity = {
    id = "9c0e7d6b-1a2f-4e3d-8c5b-6a7f8e9d0c1b"
  }
}
