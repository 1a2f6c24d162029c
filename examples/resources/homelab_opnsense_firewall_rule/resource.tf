# The seed's rule: let the k3s nodes (the K3S interface's network) reach the
# API VIP through the alias that holds it.
data "homelab_opnsense_interfaces" "all" {}

locals {
  k3s_interface = data.homelab_opnsense_interfaces.all.by_description["K3S"]
}

resource "homelab_opnsense_firewall_alias" "k3s_control_plane_lb" {
  name    = "K3s_Control_Plane_Loadbalancer"
  type    = "host"
  content = ["10.0.3.100"]
}

resource "homelab_opnsense_firewall_rule" "k3s_to_vip" {
  description      = "k3s nodes to the control-plane VIP"
  interfaces       = [local.k3s_interface]
  direction        = "in"
  action           = "pass"
  ip_protocol      = "inet"
  protocol         = "TCP"
  source           = local.k3s_interface
  destination      = homelab_opnsense_firewall_alias.k3s_control_plane_lb.name
  destination_port = "6443"
}
