# The id is the alias's UUID or its name.
import {
  to = homelab_opnsense_firewall_alias.k3s_control_plane_lb
  id = "K3s_Control_Plane_Loadbalancer"
}
