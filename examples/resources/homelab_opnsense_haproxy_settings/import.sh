# There is one set of settings per OPNsense; its id is always `haproxy`.
terraform import homelab_opnsense_haproxy_settings.this haproxy
