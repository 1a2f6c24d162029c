# By the host's address (SSH settings come from the provider's ssh block):
terraform import homelab_k3s_agent.k8s_worker_1 10.0.3.21
