variable "migrate" {
  description = "false (step 1): only the HAProxy VIP in front of the existing k8s-control-1; the nodes are untouched. true (step 2): import the four nodes, convert k8s-control-1 from SQLite to embedded etcd (one way, after a backup), add the VIP to its certificate, join two servers and re-point the agents at the VIP."
  type        = bool
  default     = false
}

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
  description = "First three octets of the k3s network (null: the seed's 10.0.3); servers are .2/.7/.8, agents .21-.23, the VIP .100."
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
  description = "The k3s release the cluster already runs (k3s --version on k8s-control-1); new servers get the same."
  type        = string
  default     = "v1.31.5+k3s1"
}

variable "k3s_token" {
  description = "The token the existing cluster was installed with (K3S_TOKEN of the original install, or the part after '::server:' in /var/lib/rancher/k3s/server/token). TF_VAR_k3s_token."
  type        = string
  sensitive   = true
}

variable "health_check_interval" {
  description = "How often HAProxy checks each API server (the seed used 10s)."
  type        = string
  default     = "10s"
}

variable "install_script_file" {
  description = "A local k3s install script to upload instead of downloading get.k3s.io (only the new servers are installed)."
  type        = string
  default     = null
}

variable "install_env" {
  description = "Extra non-secret INSTALL_K3S_* variables for the install script."
  type        = map(string)
  default     = {}
}
