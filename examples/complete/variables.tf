variable "opnsense_url" {
  description = "OPNsense web UI/API URL."
  type        = string
  default     = "https://10.0.3.1"
}

variable "opnsense_api_key" {
  description = "OPNsense API key (TF_VAR_opnsense_api_key)."
  type        = string
  sensitive   = true
}

variable "opnsense_api_secret" {
  description = "OPNsense API secret (TF_VAR_opnsense_api_secret)."
  type        = string
  sensitive   = true
}

variable "opnsense_ca_cert_file" {
  description = "PEM file of the CA that signed OPNsense's web certificate (null: the system roots)."
  type        = string
  default     = null
}

variable "ssh_user" {
  description = "SSH login on the k3s hosts (non-root users use sudo)."
  type        = string
  default     = "root"
}

variable "ssh_private_key_file" {
  description = "SSH private key file for the k3s hosts."
  type        = string
}

variable "ssh_known_hosts_file" {
  description = "known_hosts file holding the k3s hosts' keys (host keys are always verified)."
  type        = string
}

variable "address_prefix" {
  description = "First three octets of the k3s network (null: the seed's 10.0.3); hosts are .2/.7/.8, agents .21-.23, the VIP .100."
  type        = string
  default     = null

  validation {
    condition     = var.address_prefix == null ? true : can(regex("^\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}$", var.address_prefix))
    error_message = "The address_prefix must be three octets such as \"10.0.3\"."
  }
}

variable "vip_interface" {
  description = "OPNsense interface key carrying the VIP."
  type        = string
  default     = "lan"
}

variable "k3s_version" {
  description = "k3s release on every node."
  type        = string
  default     = "v1.31.5+k3s1"
}

variable "k3s_token" {
  description = "Cluster secret (TF_VAR_k3s_token)."
  type        = string
  sensitive   = true
}

variable "extra_sans" {
  description = "Further API certificate SANs."
  type        = list(string)
  default     = []
}

variable "health_check_interval" {
  description = "How often HAProxy checks each API server (the seed used 10s)."
  type        = string
  default     = "10s"
}

variable "install_script_file" {
  description = "A local k3s install script to upload instead of downloading get.k3s.io."
  type        = string
  default     = null
}

variable "install_env" {
  description = "Extra non-secret INSTALL_K3S_* variables for the install script."
  type        = map(string)
  default     = {}
}

variable "vip_subnet_bits" {
  description = "Prefix length of the VIP: 32 for the single-firewall IP alias; for a CARP pair, the interface's prefix length (e.g. 24)."
  type        = number
  default     = 32
}

variable "secondary_firewall" {
  description = "Optional second OPNsense for a CARP pair: url = its API URL, ca_cert_file = PEM file of its web CA (null: the system roots), peer = its address for the primary's HA sync, username = its HA sync user, vhid = the VIP's CARP group. Null (the default) keeps the single firewall."
  type = object({
    url          = string
    ca_cert_file = string
    peer         = string
    username     = string
    vhid         = number
  })
  default = null
}

variable "secondary_api_key" {
  description = "API key of the secondary firewall (TF_VAR_secondary_api_key), with secondary_firewall."
  type        = string
  default     = null
  sensitive   = true
}

variable "secondary_api_secret" {
  description = "API secret of the secondary firewall (TF_VAR_secondary_api_secret), with secondary_firewall."
  type        = string
  default     = null
  sensitive   = true
}

variable "secondary_firewall_password" {
  description = "Password of the secondary's HA sync user (TF_VAR_secondary_firewall_password), with secondary_firewall."
  type        = string
  default     = null
  sensitive   = true
}

variable "carp_password" {
  description = "CARP password of the VIP (TF_VAR_carp_password), with secondary_firewall."
  type        = string
  default     = null
  sensitive   = true
}
