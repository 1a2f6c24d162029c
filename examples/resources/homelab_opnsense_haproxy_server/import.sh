# By the server's UUID (OPNsense UI: Services > HAProxy > Settings > Real Servers, or the API):
terraform import homelab_opnsense_haproxy_server.k8s_control_1 1c5e2b9a-3f0d-4a57-9f8e-2d6b7c41a0e3

# By its name (names are unique among servers):
terraform import homelab_opnsense_haproxy_server.k8s_control_1 k8s-control-1
