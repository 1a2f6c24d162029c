import {
  to = homelab_opnsense_hasync.this
  identity = {
    id = "hasync"
  }
}
