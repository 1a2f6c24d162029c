import {
  to = homelab_opnsense_haproxy_settings.this
  identity = {
    id = "haproxy"
  }
}
