# There is one set of settings per OPNsense; its id is always `haproxy`.
import {
  to = homelab_opnsense_haproxy_settings.this
  id = "haproxy"
}
