# By UUID:
terraform import homelab_opnsense_haproxy_frontend.k3s_controlplane 5e8a1f3c-9b24-4d6e-b7a0-3c2d1e0f9a8b

# By name:
terraform import homelab_opnsense_haproxy_frontend.k3s_controlplane k3s-controlplane
