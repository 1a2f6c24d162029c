variable "servers" {
  description = "Control-plane nodes, name => { address }. The lexically first name bootstraps the cluster (cluster-init); the others join through its address."
  type = map(object({
    address = string
  }))

  validation {
    condition     = length(var.servers) > 0 && length(var.servers) % 2 == 1
    error_message = "The servers map must hold an odd number of control-plane nodes (1, 3, 5, ...): embedded etcd needs a majority to stay writable."
  }

  validation {
    condition     = alltrue([for s in values(var.servers) : length(trimspace(s.address)) > 0])
    error_message = "Every entry of servers needs a non-empty address."
  }
}

variable "agents" {
  description = "Worker nodes, name => { address }. They register through the VIP."
  type = map(object({
    address = string
  }))
  default = {}

  validation {
    condition     = alltrue([for a in values(var.agents) : length(trimspace(a.address)) > 0])
    error_message = "Every entry of agents needs a non-empty address."
  }
}

variable "vip" {
  description = "The control-plane virtual IP (IPv4, without prefix length), e.g. 10.0.3.100."
  type        = string

  validation {
    condition     = can(regex("^(\\d{1,3}\\.){3}\\d{1,3}$", var.vip)) && can(cidrhost("${var.vip}/32", 0))
    error_message = "The vip must be a plain IPv4 address such as 10.0.3.100 (no prefix length, no host name)."
  }
}

variable "vip_interface" {
  description = "OPNsense interface key that carries the VIP (lan, opt1, ...; see the homelab_opnsense_interfaces data source)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9_]*$", var.vip_interface))
    error_message = "The vip_interface must be an OPNsense interface key such as \"lan\" or \"opt1\" (not its description)."
  }
}

variable "vip_subnet_bits" {
  description = "Prefix length of the VIP (32 for an IP alias)."
  type        = number
  default     = 32

  validation {
    condition     = var.vip_subnet_bits >= 1 && var.vip_subnet_bits <= 32 && floor(var.vip_subnet_bits) == var.vip_subnet_bits
    error_message = "The vip_subnet_bits must be a whole number from 1 to 32."
  }
}

variable "k3s_version" {
  description = "k3s release on every node, e.g. v1.31.5+k3s1."
  type        = string

  validation {
    condition     = can(regex("^v\\d+\\.\\d+\\.\\d+\\+k3s\\d+$", var.k3s_version))
    error_message = "The k3s_version must look like v1.31.5+k3s1 (a k3s release tag)."
  }
}

variable "k3s_token" {
  description = "Cluster secret the first server is created with (joiners and agents get its CA-pinned join_token)."
  type        = string
  sensitive   = true

  validation {
    condition     = length(var.k3s_token) >= 16
    error_message = "The k3s_token must be at least 16 characters long."
  }
}

variable "extra_sans" {
  description = "Further SANs for the API certificate (the VIP is always included)."
  type        = list(string)
  default     = []
}

variable "disable" {
  description = "Packaged k3s components to disable on the servers."
  type        = list(string)
  default     = ["servicelb"]
}

variable "health_check_interval" {
  description = "How often HAProxy checks each API server (the seed's `check inter 10s`); a server is marked DOWN after 3 failed checks."
  type        = string
  default     = "10s"

  validation {
    condition     = can(regex("^[1-9][0-9]*(ms|s|m)$", var.health_check_interval))
    error_message = "The health_check_interval must be a duration such as \"10s\", \"2s\" or \"500ms\"."
  }
}

variable "exporter_port" {
  description = "Port of HAProxy's Prometheus exporter, bound on the VIP."
  type        = number
  default     = 8404

  validation {
    condition     = var.exporter_port >= 1 && var.exporter_port <= 65535 && var.exporter_port != 6443
    error_message = "The exporter_port must be a TCP port (1-65535) other than 6443."
  }
}

variable "name_prefix" {
  description = "Prefix of the HAProxy and firewall object names (letters, digits, _ and -)."
  type        = string
  default     = "k3s"

  validation {
    condition     = can(regex("^[A-Za-z][A-Za-z0-9_-]{0,20}$", var.name_prefix))
    error_message = "The name_prefix must start with a letter and hold at most 21 letters, digits, '_' or '-'."
  }
}

variable "install_script" {
  description = "Content of the k3s install script to upload instead of downloading get.k3s.io (e.g. for an offline lab)."
  type        = string
  default     = null
}

variable "install_env" {
  description = "Extra non-secret INSTALL_K3S_* variables for the install script."
  type        = map(string)
  default     = {}
}

variable "create_timeout" {
  description = "Time limit for creating one k3s node."
  type        = string
  default     = "10m"
}

variable "secondary_firewall" {
  description = "An optional second OPNsense forming a pair with the one the provider manages: the VIP becomes a CARP address with this vhid (set vip_subnet_bits to the interface's prefix length, and carp_password) and the primary's HA sync copies HAProxy, aliases, rules and the CARP VIP to the secondary (peer = its address or URL, username = its HA sync user, whose password is secondary_firewall_password). Null (the default) keeps the single-firewall form with an IP alias."
  type = object({
    peer     = string
    username = string
    vhid     = number
  })
  default = null
}

variable "secondary_firewall_password" {
  description = "Password of the secondary's HA sync user (with secondary_firewall). Kept in state, sensitive: works with Terraform 1.0.3."
  type        = string
  default     = null
  sensitive   = true
}

variable "carp_password" {
  description = "CARP password of the VIP (with secondary_firewall). Kept in state, sensitive: works with Terraform 1.0.3."
  type        = string
  default     = null
  sensitive   = true
}
