# The seed's whole topology in one apply: HAProxy on OPNsense in front of three
# k3s servers with embedded etcd, and three agents registering through the VIP.
#
# Secrets come from the environment (TF_VAR_opnsense_api_secret, TF_VAR_k3s_token)
# or files, never from a command line.
provider "homelab" {
  opnsense {
    url         = var.opnsense_url
    api_key     = var.opnsense_api_key
    api_secret  = var.opnsense_api_secret
    ca_cert_pem = var.opnsense_ca_cert_file == null ? null : file(var.opnsense_ca_cert_file)

    # HA form: the secondary firewall's own API, so the provider can apply the synced HAProxy config there.
    dynamic "secondary" {
      for_each = var.secondary_firewall == null ? [] : [var.secondary_firewall]
      content {
        url         = secondary.value.url
        api_key     = var.secondary_api_key
        api_secret  = var.secondary_api_secret
        ca_cert_pem = secondary.value.ca_cert_file == null ? null : file(secondary.value.ca_cert_file)
      }
    }
  }

  ssh {
    user        = var.ssh_user
    private_key = file(var.ssh_private_key_file)
    known_hosts = file(var.ssh_known_hosts_file)
  }
}

module "k3s_ha" {
  source = "../modules/k3s-ha"

  servers = {
    "k8s-control-1" = { address = var.address_prefix == null ? "10.0.3.2" : "${var.address_prefix}.2" }
    "k8s-control-2" = { address = var.address_prefix == null ? "10.0.3.7" : "${var.address_prefix}.7" }
    "k8s-control-3" = { address = var.address_prefix == null ? "10.0.3.8" : "${var.address_prefix}.8" }
  }
  agents = {
    "k8s-worker-1" = { address = var.address_prefix == null ? "10.0.3.21" : "${var.address_prefix}.21" }
    "k8s-worker-2" = { address = var.address_prefix == null ? "10.0.3.22" : "${var.address_prefix}.22" }
    "k8s-worker-3" = { address = var.address_prefix == null ? "10.0.3.23" : "${var.address_prefix}.23" }
  }

  vip             = var.address_prefix == null ? "10.0.3.100" : "${var.address_prefix}.100"
  vip_interface   = var.vip_interface
  vip_subnet_bits = var.vip_subnet_bits
  k3s_version     = var.k3s_version
  k3s_token       = var.k3s_token
  extra_sans      = var.extra_sans

  health_check_interval = var.health_check_interval

  # Null (the default): one firewall with an IP alias VIP. Set: a CARP pair with HA sync.
  secondary_firewall = var.secondary_firewall == null ? null : {
    peer     = var.secondary_firewall.peer
    username = var.secondary_firewall.username
    vhid     = var.secondary_firewall.vhid
  }
  secondary_firewall_password = var.secondary_firewall_password
  carp_password               = var.carp_password

  install_script = var.install_script_file == null ? null : file(var.install_script_file)
  install_env    = var.install_env
}
