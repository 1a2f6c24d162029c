# There is one set of HA settings per OPNsense; its id is always `hasync`.
terraform import homelab_opnsense_hasync.this hasync
