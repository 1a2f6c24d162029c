import {
  to = homelab_opnsense_firewall_rule.k3s_to_vip
  identity = {
    id = "4a6c8e0f-2b3d-4f5a-8c7e-9d0f1a2b3c4d"
  }
}
