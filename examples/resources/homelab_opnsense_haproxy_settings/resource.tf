# HAProxy on, graceful reloads (so kubectl watches survive a reconfigure) and the
# Prometheus exporter on port 8404, as in the seed. Declare it once per OPNsense.
resource "homelab_opnsense_haproxy_settings" "this" {
  enabled       = true
  graceful_stop = true

  prometheus_enabled = true
  prometheus_bind    = ["*:8404"]
  prometheus_path    = "/metrics"
}
