# By UUID:
terraform import homelab_opnsense_firewall_rule.k3s_to_vip 4a6c8e0f-2b3d-4f5a-8c7e-9d0f1a2b3c4d

# By description (when no other rule has the same one):
terraform import homelab_opnsense_firewall_rule.k3s_to_vip "k3s nodes to the control-plane VIP"
