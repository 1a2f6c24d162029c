# By UUID:
terraform import homelab_opnsense_firewall_alias.k3s_control_plane_lb 2f4e6a8c-0b1d-4c3e-9f5a-7b8c9d0e1f2a

# By name:
terraform import homelab_opnsense_firewall_alias.k3s_control_plane_lb K3s_Control_Plane_Loadbalancer
