# By the host's address (SSH settings come from the provider's ssh block):
terraform import homelab_k3s_server.k8s_control_1 10.0.3.2
