# A pool whose servers join one by one: the backend and its frontend exist first, and each server joins when its
# own resource is ready (here: when its k3s node is), instead of the pool waiting for all of them.
resource "homelab_opnsense_haproxy_backend" "k3s_controlplane" {
  name        = "k3s-controlplane"
  mode        = "tcp"
  persistence = "none"
  # No `servers`: the members below own the pool.
}

resource "homelab_opnsense_haproxy_server" "control_1" {
  name    = "k8s-control-1"
  address = "10.0.3.2"
  port    = 6443
}

resource "homelab_opnsense_haproxy_backend_member" "control_1" {
  backend = homelab_opnsense_haproxy_backend.k3s_controlplane.id
  server  = homelab_opnsense_haproxy_server.control_1.id
}
