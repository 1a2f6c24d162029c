# Save as e.g. discover.tfquery.hcl, then:
#   terraform query                                      # which of these hosts run a k3s server
#   terraform query -generate-config-out=generated.tf    # plus import blocks and configuration
# Hosts without a k3s server are skipped; unreachable hosts give a warning. SSH settings not given here come from
# the provider's ssh { } block.
list "homelab_k3s_server" "servers" {
  provider = homelab
  # Also read each server like an import (needed for -generate-config-out).
  include_resource = true
  config {
    addresses = ["10.0.3.11", "10.0.3.12", "10.0.3.13"]
    user      = "ops"
  }
}
