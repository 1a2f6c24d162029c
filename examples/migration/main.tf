# The seed's migration, as Terraform: a single k3s server on SQLite (k8s-control-1) with three agents, all
# installed by hand, becomes the HA control plane behind HAProxy on OPNsense, in the seed's order.
#
#   Step 1, `migrate = false` (the default): the load balancer, exactly the seed's first section. The VIP, the
#   firewall alias and rule, the health check and the HAProxy pool holding k8s-control-1 (by its address) are
#   created on OPNsense. Nothing on the k3s nodes changes; the API now also answers through the VIP (its
#   certificate does not name the VIP yet).
#
#   Step 2, `migrate = true`: the import blocks take the four running nodes into the state, and the same apply
#   converts k8s-control-1 from SQLite to embedded etcd (its allow_datastore_migration gate; the provider backs up
#   the datastore to /var/backups/k3s/<UTC time>-sqlite-to-etcd/ on the host first), adds the VIP to its
#   certificate (regenerating the sticky certificate when k3s keeps the old one), joins k8s-control-2 and -3
#   through k8s-control-1's own address, adds each to the pool once it is Ready, and only then re-points the
#   agents at the VIP. Review that plan: imports, in-place updates and creations, never a replacement.
#
# docs/guides/migration.md walks through both steps, the plan review, the backup and the way back.
locals {
  prefix = var.address_prefix == null ? "10.0.3" : var.address_prefix

  control_1 = "${local.prefix}.2"
  new_servers = {
    "k8s-control-2" = "${local.prefix}.7"
    "k8s-control-3" = "${local.prefix}.8"
  }
  agents = {
    "k8s-worker-1" = "${local.prefix}.21"
    "k8s-worker-2" = "${local.prefix}.22"
    "k8s-worker-3" = "${local.prefix}.23"
  }

  vip           = "${local.prefix}.100"
  vip_url       = "https://${local.vip}:6443"
  control_1_url = "https://${local.control_1}:6443"

  install_script = var.install_script_file == null ? null : file(var.install_script_file)
}

provider "homelab" {
  opnsense {
    url         = var.opnsense_url
    api_key     = var.opnsense_api_key
    api_secret  = var.opnsense_api_secret
    ca_cert_pem = var.opnsense_ca_cert_file == null ? null : file(var.opnsense_ca_cert_file)
  }

  ssh {
    user        = var.ssh_user
    private_key = file(var.ssh_private_key_file)
    known_hosts = file(var.ssh_known_hosts_file)
  }
}

# --- Step 2: the nodes made by hand, imported by their address ---------------------------------------------------

import {
  for_each = var.migrate ? { (local.control_1) = 0 } : {}

  to = homelab_k3s_server.k8s_control_1[each.value]
  id = each.key
}

import {
  for_each = var.migrate ? local.agents : {}

  to = homelab_k3s_agent.worker[each.key]
  id = each.value
}

# --- OPNsense: the VIP, who may reach it, the HAProxy pool ------------------------------------------------------

resource "homelab_opnsense_vip" "api" {
  interface   = var.vip_interface
  mode        = "ipalias"
  address     = "${local.vip}/32"
  description = "k3s control plane VIP"
}

resource "homelab_opnsense_firewall_alias" "vip" {
  name        = "K3s_Control_Plane_Loadbalancer"
  type        = "host"
  content     = [local.vip]
  description = "k3s API VIP (HAProxy on OPNsense)"
}

resource "homelab_opnsense_firewall_alias" "nodes" {
  name        = "K3s_Nodes"
  type        = "host"
  content     = concat([local.control_1], values(local.new_servers), values(local.agents))
  description = "k3s nodes allowed to reach the API VIP"
}

resource "homelab_opnsense_firewall_rule" "nodes_to_vip" {
  description      = "k3s nodes to the control-plane VIP"
  interfaces       = [var.vip_interface]
  direction        = "in"
  action           = "pass"
  ip_protocol      = "inet"
  protocol         = "TCP"
  source           = homelab_opnsense_firewall_alias.nodes.name
  destination      = homelab_opnsense_firewall_alias.vip.name
  destination_port = "6443"
}

resource "homelab_opnsense_haproxy_healthcheck" "api" {
  name        = "k3s-api-tcp"
  type        = "tcp"
  interval    = var.health_check_interval
  description = "TCP connect to the k3s API port"
}

# The seed's first pool member: the existing server, by its address (it is not managed before step 2).
resource "homelab_opnsense_haproxy_server" "control_1" {
  name           = "k8s-control-1"
  address        = local.control_1
  port           = 6443
  check_interval = var.health_check_interval
  description    = "k3s API server on k8s-control-1"
}

# A new server enters the pool only once its node exists (is Ready): the VIP never sends traffic to a server
# that is still joining.
resource "homelab_opnsense_haproxy_server" "new" {
  for_each = homelab_k3s_server.new

  name           = each.key
  address        = each.value.id
  port           = 6443
  check_interval = var.health_check_interval
  description    = "k3s API server on ${each.key}"
}

resource "homelab_opnsense_haproxy_backend" "api" {
  name        = "k3s-controlplane"
  description = "Pool serving all K3s controlplane hosts"
  mode        = "tcp"
  algorithm   = "roundrobin"
  persistence = "none"

  servers = concat(
    [homelab_opnsense_haproxy_server.control_1.id],
    [for name in sort(keys(homelab_opnsense_haproxy_server.new)) : homelab_opnsense_haproxy_server.new[name].id],
  )
  health_check            = homelab_opnsense_haproxy_healthcheck.api.id
  check_interval          = var.health_check_interval
  health_check_log_status = true
}

resource "homelab_opnsense_haproxy_frontend" "api" {
  name            = "k3s-controlplane"
  description     = "K3s controlplane hosts"
  bind            = ["${local.vip}:6443"]
  mode            = "tcp"
  default_backend = homelab_opnsense_haproxy_backend.api.id
  log_detailed    = true
  timeout_client  = "10m"

  depends_on = [homelab_opnsense_vip.api]
}

resource "homelab_opnsense_haproxy_settings" "this" {
  enabled       = true
  graceful_stop = true

  prometheus_enabled = true
  prometheus_bind    = ["${local.vip}:8404"]
  prometheus_path    = "/metrics"

  depends_on = [homelab_opnsense_vip.api]
}

# --- k3s --------------------------------------------------------------------------------------------------------

# The existing server, described as it runs (installed with `--disable servicelb`), plus what the migration adds:
# the VIP SAN and the gate that allows the one-way conversion to embedded etcd.
resource "homelab_k3s_server" "k8s_control_1" {
  count = var.migrate ? 1 : 0

  role                      = "init"
  token                     = var.k3s_token
  version                   = var.k3s_version
  node_name                 = "k8s-control-1"
  disable                   = ["servicelb"]
  tls_san                   = [local.vip]
  allow_datastore_migration = true
  kubeconfig_server         = local.vip_url
  install_script            = local.install_script
  install_env               = var.install_env

  host {
    address = local.control_1
  }

  # This server holds the cluster's data: setting migrate back to false (or a destroy) must not uninstall it.
  # To stop managing it, use `terraform state rm` (see the guide's "Going back").
  lifecycle {
    prevent_destroy = true
  }
}

# The new servers join through k8s-control-1's own address (never through the VIP, whose pool may soon hold the
# joining server itself: k3s#9661). The provider joins them one at a time (etcd allows one learner at a time).
resource "homelab_k3s_server" "new" {
  for_each = var.migrate ? local.new_servers : {}

  role           = "join"
  server_url     = local.control_1_url
  token          = homelab_k3s_server.k8s_control_1[0].join_token
  version        = var.k3s_version
  node_name      = each.key
  disable        = ["servicelb"]
  tls_san        = [local.vip]
  install_script = local.install_script
  install_env    = var.install_env

  host {
    address = each.value
  }
}

# The agents registered with k8s-control-1's address. Imported, they are re-pointed at the VIP, and only after the
# pool holds every server (the seed checked HAProxy before it reinstalled its workers). Afterwards each agent
# balances over the servers itself; the VIP is its last resort.
resource "homelab_k3s_agent" "worker" {
  for_each = var.migrate ? local.agents : {}

  server_url = local.vip_url
  # The token they were installed with. Switching to homelab_k3s_server.k8s_control_1[0].join_token (the CA-pinned
  # form) later is an in-place change that restarts each agent.
  token          = var.k3s_token
  version        = var.k3s_version
  node_name      = each.key
  install_script = local.install_script
  install_env    = var.install_env

  host {
    address = each.value
  }

  depends_on = [
    homelab_opnsense_haproxy_frontend.api,
    homelab_opnsense_haproxy_backend.api,
    homelab_opnsense_firewall_rule.nodes_to_vip,
  ]
}
