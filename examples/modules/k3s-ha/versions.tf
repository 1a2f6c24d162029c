terraform {
  required_version = ">= 1.0"

  required_providers {
    homelab = {
      source = "terraform.local/homelab/homelab"
    }
  }
}
