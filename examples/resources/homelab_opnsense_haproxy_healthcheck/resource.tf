# A plain TCP connect check every 10 seconds, as the seed's health monitor.
resource "homelab_opnsense_haproxy_healthcheck" "k3s_api" {
  name        = "k3s-api-tcp"
  type        = "tcp"
  interval    = "10s"
  description = "TCP connect to the k3s API port"
}

# An HTTP check of the API server's readiness endpoint, sent over TLS by the servers' `ssl` setting.
resource "homelab_opnsense_haproxy_healthcheck" "k3s_readyz" {
  name         = "k3s-readyz"
  type         = "http"
  interval     = "10s"
  http_method  = "get"
  http_uri     = "/readyz"
  http_version = "http11"
  http_host    = "kubernetes.default"
}
