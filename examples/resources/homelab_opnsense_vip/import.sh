# By UUID:
terraform import homelab_opnsense_vip.k3s_api 9c0e7d6b-1a2f-4e3d-8c5b-6a7f8e9d0c1b

# By address (with or without the prefix length) or by description:
terraform import homelab_opnsense_vip.k3s_api 10.0.3.100
