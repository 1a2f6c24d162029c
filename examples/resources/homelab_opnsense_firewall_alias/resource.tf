# The seed's alias holding the control-plane VIP, for use in firewall rules.
resource "homelab_opnsense_firewall_alias" "k3s_control_plane_lb" {
  name        = "K3s_Control_Plane_Loadbalancer"
  type        = "host"
  content     = ["10.0.3.100"]
  description = "k3s API VIP (HAProxy on OPNsense)"
}

# A port alias.
resource "homelab_opnsense_firewall_alias" "k3s_ports" {
  name    = "k3s_ports"
  type    = "port"
  content = ["6443", "8404"]
}
