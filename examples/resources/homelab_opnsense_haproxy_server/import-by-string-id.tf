# The id is the server's UUID or its name.
import {
  to = homelab_opnsense_haproxy_server.k8s_control_1
  id = "k8s-control-1"
}
