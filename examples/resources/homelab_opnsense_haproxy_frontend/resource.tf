# The seed's public service: TCP on the VIP's port 6443 to the control-plane pool.
resource "homelab_opnsense_haproxy_backend" "k3s_controlplane" {
  name        = "k3s-controlplane"
  mode        = "tcp"
  persistence = "none"
}

resource "homelab_opnsense_haproxy_frontend" "k3s_controlplane" {
  name            = "k3s-controlplane"
  description     = "K3s controlplane hosts"
  bind            = ["10.0.3.100:6443"]
  mode            = "tcp"
  default_backend = homelab_opnsense_haproxy_backend.k3s_controlplane.id

  # option tcplog
  log_detailed = true
  # kubectl watches are long-lived connections.
  timeout_client = "10m"
}
