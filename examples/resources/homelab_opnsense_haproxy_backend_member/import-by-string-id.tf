# The id is `<backend id>/<server id>`.
import {
  to = homelab_opnsense_haproxy_backend_member.control_1
  id = "0b9d4c2e-6a71-4f3b-8e05-c1d2a3b4e5f6/5f1e2d3c-4b5a-4697-8879-6a5b4c3d2e1f"
}
