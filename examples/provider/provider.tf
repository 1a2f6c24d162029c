# The simplest form: every OPNsense setting comes from the environment
# (OPNSENSE_URI, OPNSENSE_API_KEY, OPNSENSE_API_SECRET), so no credential is
# written into a .tf file.
provider "homelab" {}

# Everything spelled out. Pass secrets in through variables (TF_VAR_...) or a
# secret store; never commit them.
provider "homelab" {
  alias = "explicit"

  opnsense {
    url         = "https://192.168.1.1"
    api_key     = var.opnsense_api_key
    api_secret  = var.opnsense_api_secret
    ca_cert_pem = var.opnsense_ca_cert_pem
    timeout     = "30s"
  }

  ssh {
    user        = "ubuntu"
    private_key = var.ssh_private_key
    known_hosts = var.ssh_known_hosts
  }
}

variable "opnsense_api_key" {
  type      = string
  sensitive = true
}

variable "opnsense_api_secret" {
  type      = string
  sensitive = true
}

variable "opnsense_ca_cert_pem" {
  type        = string
  description = "The OPNsense web UI's (self-signed) CA certificate, PEM."
}

variable "ssh_private_key" {
  type      = string
  sensitive = true
}

variable "ssh_known_hosts" {
  type        = string
  description = "known_hosts lines of the k3s hosts."
}
