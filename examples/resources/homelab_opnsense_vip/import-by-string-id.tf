# The id is the VIP's UUID, its address or its description.
import {
  to = homelab_opnsense_vip.k3s_api
  id = "10.0.3.100/32"
}
