import {
  to = homelab_opnsense_haproxy_server.k8s_control_1
  identity = {
    id = "1c5e2b9a-3f0d-4a57-9f8e-2d6b7c41a0e3"
  }
}
