# There is one set of HA settings per OPNsense; its id is always `hasync`.
import {
  to = homelab_opnsense_hasync.this
  id = "hasync"
}
