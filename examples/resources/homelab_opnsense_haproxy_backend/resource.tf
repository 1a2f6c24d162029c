# The seed's pool: three k3s API servers, round robin over TCP, each checked every 10 seconds.
locals {
  control_plane = {
    "k8s-control-1" = "10.0.3.2"
    "k8s-control-2" = "10.0.3.7"
    "k8s-control-3" = "10.0.3.8"
  }
}

resource "homelab_opnsense_haproxy_server" "control_plane" {
  for_each = local.control_plane

  name    = each.key
  address = each.value
  port    = 6443
}

resource "homelab_opnsense_haproxy_healthcheck" "k3s_api" {
  name     = "k3s-api-tcp"
  type     = "tcp"
  interval = "10s"
}

resource "homelab_opnsense_haproxy_backend" "k3s_controlplane" {
  name        = "k3s-controlplane"
  description = "K3s controlplane hosts"
  mode        = "tcp"
  algorithm   = "roundrobin"
  # Explicit: OPNsense's UI default would make the pool sticky (stick table on the source address).
  persistence = "none"

  servers                 = [for s in homelab_opnsense_haproxy_server.control_plane : s.id]
  health_check            = homelab_opnsense_haproxy_healthcheck.k3s_api.id
  check_interval          = "10s"
  health_check_log_status = true
}
