# A highly available k3s control plane behind HAProxy on OPNsense, as in the seed:
# VIP + firewall rule + HAProxy pool on the VIP's port 6443, embedded etcd servers,
# agents registering through the VIP.
locals {
  server_names = sort(keys(var.servers))
  first_name   = local.server_names[0]
  first        = var.servers[local.first_name]
  joiners      = { for name in slice(local.server_names, 1, length(local.server_names)) : name => var.servers[name] }

  vip_url  = "https://${var.vip}:6443"
  tls_sans = distinct(concat([var.vip], var.extra_sans))
  # Letters, digits and _ only: OPNsense alias names. With the longest prefix name_prefix allows (21), the
  # derived names below stay within OPNsense's 31-character limit (a unit test of the provider checks it).
  alias_prefix = replace(var.name_prefix, "-", "_")
}

# --- OPNsense: VIP, firewall ----------------------------------------------------

resource "homelab_opnsense_vip" "api" {
  interface   = var.vip_interface
  mode        = var.secondary_firewall == null ? "ipalias" : "carp"
  address     = "${var.vip}/${var.vip_subnet_bits}"
  vhid        = var.secondary_firewall == null ? null : var.secondary_firewall.vhid
  password    = var.secondary_firewall == null ? null : var.carp_password
  description = "${var.name_prefix} control plane VIP"

  # Only the agents need the firewall's side, and they wait for the joins anyway: starting it after the first
  # server keeps its reloads off the first server's start (the head of the critical path) and lets them run
  # while the joiners wait for etcd.
  depends_on = [homelab_k3s_server.first]
}

# With a secondary firewall: the primary syncs HAProxy, aliases, rules and the CARP VIP to it (the secondary's
# CARP skew is raised by 100 on the way, so it stays backup while the primary is up).
resource "homelab_opnsense_hasync" "pair" {
  count      = var.secondary_firewall == null ? 0 : 1
  peer       = var.secondary_firewall.peer
  username   = var.secondary_firewall.username
  password   = var.secondary_firewall_password
  sync_items = ["haproxy", "aliases", "rules", "virtualip"]

  # After the first server, as every firewall object here (see the VIP).
  depends_on = [homelab_k3s_server.first]
}

resource "homelab_opnsense_firewall_alias" "vip" {
  name        = "${local.alias_prefix}_api_vip"
  type        = "host"
  content     = [var.vip]
  description = "${var.name_prefix} API VIP (HAProxy on OPNsense)"

  depends_on = [homelab_k3s_server.first] # see the VIP
}

resource "homelab_opnsense_firewall_alias" "nodes" {
  name        = "${local.alias_prefix}_nodes"
  type        = "host"
  content     = distinct(concat([for s in values(var.servers) : s.address], [for a in values(var.agents) : a.address]))
  description = "${var.name_prefix} nodes allowed to reach the API VIP"

  depends_on = [homelab_k3s_server.first] # see the VIP
}

resource "homelab_opnsense_firewall_rule" "nodes_to_vip" {
  description      = "${var.name_prefix} nodes to the control-plane VIP"
  interfaces       = [var.vip_interface]
  direction        = "in"
  action           = "pass"
  ip_protocol      = "inet"
  protocol         = "TCP"
  source           = homelab_opnsense_firewall_alias.nodes.name
  destination      = homelab_opnsense_firewall_alias.vip.name
  destination_port = "6443"

  depends_on = [homelab_k3s_server.first] # see the VIP
}

# --- k3s servers ----------------------------------------------------------------

resource "homelab_k3s_server" "first" {
  role              = "init"
  token             = var.k3s_token
  version           = var.k3s_version
  node_name         = local.first_name
  tls_san           = local.tls_sans
  disable           = var.disable
  kubeconfig_server = local.vip_url
  install_script    = var.install_script
  install_env       = var.install_env

  host {
    address = local.first.address
  }

  timeouts {
    create = var.create_timeout
    update = var.create_timeout
  }
}

# Joiners go through the first server's own address: the VIP's pool may soon
# contain the joiner itself, which cannot answer before it has joined.
resource "homelab_k3s_server" "join" {
  for_each = local.joiners

  role           = "join"
  server_url     = "https://${local.first.address}:6443"
  token          = homelab_k3s_server.first.join_token
  version        = var.k3s_version
  node_name      = each.key
  tls_san        = local.tls_sans
  disable        = var.disable
  install_script = var.install_script
  install_env    = var.install_env

  host {
    address = each.value.address
  }

  timeouts {
    create = var.create_timeout
    update = var.create_timeout
  }
}

# --- HAProxy pool on the VIP ----------------------------------------------------

resource "homelab_opnsense_haproxy_healthcheck" "api" {
  name        = "${var.name_prefix}-api-tcp"
  type        = "tcp"
  interval    = var.health_check_interval
  description = "TCP connect to the k3s API port"

  # The HA sync after each HAProxy batch needs the peer settings to exist first; after the first server: see the
  # VIP.
  depends_on = [homelab_opnsense_hasync.pair, homelab_k3s_server.first]
}

# Each pool member exists only once its node does (a reference to the node's
# resource orders it), so the VIP never sends traffic to a node still joining.
resource "homelab_opnsense_haproxy_server" "first" {
  name           = local.first_name
  address        = homelab_k3s_server.first.id
  port           = 6443
  check_interval = var.health_check_interval
  description    = "k3s API server on ${local.first_name}"

  # The HA sync after each HAProxy batch needs the peer settings to exist first.
  depends_on = [homelab_opnsense_hasync.pair]
}

resource "homelab_opnsense_haproxy_server" "join" {
  for_each = homelab_k3s_server.join

  name           = each.key
  address        = each.value.id
  port           = 6443
  check_interval = var.health_check_interval
  description    = "k3s API server on ${each.key}"

  # The HA sync after each HAProxy batch needs the peer settings to exist first.
  depends_on = [homelab_opnsense_hasync.pair]
}

# The pool and its frontend exist once the first server does; servers join it as members. Terraform orders by resource block,
# not by instance: a pool listing the joiners in `servers` would wait for every join, and the agents behind the
# VIP with it. With members, the first server's member lets the agents register as soon as the joins are done,
# while the joiners' members are added next to them.
resource "homelab_opnsense_haproxy_backend" "api" {
  name        = "${var.name_prefix}-controlplane"
  description = "${var.name_prefix} control-plane hosts"
  mode        = "tcp"
  algorithm   = "roundrobin"
  persistence = "none"

  # No `servers`: the homelab_opnsense_haproxy_backend_member resources below own the pool.
  health_check            = homelab_opnsense_haproxy_healthcheck.api.id
  check_interval          = var.health_check_interval
  health_check_log_status = true

  # The HA sync after each HAProxy batch needs the peer settings to exist first; after the first server: see the
  # VIP.
  depends_on = [homelab_opnsense_hasync.pair, homelab_k3s_server.first]
}

resource "homelab_opnsense_haproxy_backend_member" "first" {
  backend = homelab_opnsense_haproxy_backend.api.id
  server  = homelab_opnsense_haproxy_server.first.id

  # The HA sync after each HAProxy batch needs the peer settings to exist first.
  depends_on = [homelab_opnsense_hasync.pair]
}

resource "homelab_opnsense_haproxy_backend_member" "join" {
  for_each = homelab_opnsense_haproxy_server.join

  backend = homelab_opnsense_haproxy_backend.api.id
  server  = each.value.id

  # The HA sync after each HAProxy batch needs the peer settings to exist first.
  depends_on = [homelab_opnsense_hasync.pair]
}

resource "homelab_opnsense_haproxy_frontend" "api" {
  name            = "${var.name_prefix}-controlplane"
  description     = "${var.name_prefix} API on the VIP"
  bind            = ["${var.vip}:6443"]
  mode            = "tcp"
  default_backend = homelab_opnsense_haproxy_backend.api.id
  log_detailed    = true
  # kubectl watches are long-lived connections.
  timeout_client = "10m"

  depends_on = [homelab_opnsense_vip.api, homelab_opnsense_hasync.pair, homelab_k3s_server.first]
}

resource "homelab_opnsense_haproxy_settings" "this" {
  enabled       = true
  graceful_stop = true

  prometheus_enabled = true
  prometheus_bind    = ["${var.vip}:${var.exporter_port}"]
  prometheus_path    = "/metrics"

  depends_on = [homelab_opnsense_vip.api, homelab_opnsense_hasync.pair, homelab_k3s_server.first]
}

# --- k3s agents -----------------------------------------------------------------

# Agents register through the VIP, so the frontend, HAProxy and a server in the pool
# must be up first; afterwards each agent balances over the servers itself (it learns
# them from the cluster, not from the pool). They start after the joins, as the seed
# did, but do not wait for the joiners' pool members.
resource "homelab_k3s_agent" "this" {
  for_each = var.agents

  server_url         = local.vip_url
  token              = homelab_k3s_server.first.join_token
  version            = var.k3s_version
  node_name          = each.key
  cluster_kubeconfig = homelab_k3s_server.first.kubeconfig
  install_script     = var.install_script
  install_env        = var.install_env

  host {
    address = each.value.address
  }

  timeouts {
    create = var.create_timeout
    update = var.create_timeout
  }

  depends_on = [
    homelab_opnsense_haproxy_frontend.api,
    homelab_opnsense_haproxy_backend_member.first,
    homelab_opnsense_haproxy_settings.this,
    homelab_opnsense_firewall_rule.nodes_to_vip,
    homelab_k3s_server.join,
  ]
}
