# By UUID:
terraform import homelab_opnsense_haproxy_healthcheck.k3s_api 7a3f0e6c-52d1-4b8e-a0c4-9e1f27d85b36

# By name:
terraform import homelab_opnsense_haproxy_healthcheck.k3s_api k3s-api-tcp
