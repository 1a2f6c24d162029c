# The id is the health check's UUID or its name.
import {
  to = homelab_opnsense_haproxy_healthcheck.k3s_api
  id = "k3s-api-tcp"
}
