# The seed's first control-plane node as a HAProxy server: `server k8s-control-1 10.0.3.2:6443 check inter 10s`.
resource "homelab_opnsense_haproxy_server" "k8s_control_1" {
  name           = "k8s-control-1"
  address        = "10.0.3.2"
  port           = 6443
  check_interval = "10s"
  description    = "k3s API server on k8s-control-1"
}

# All three control-plane nodes from one map.
locals {
  control_plane = {
    "k8s-control-2" = "10.0.3.7"
    "k8s-control-3" = "10.0.3.8"
  }
}

resource "homelab_opnsense_haproxy_server" "control_plane" {
  for_each = local.control_plane

  name           = each.key
  address        = each.value
  port           = 6443
  check_interval = "10s"
}
