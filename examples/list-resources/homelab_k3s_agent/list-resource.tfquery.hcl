# Save as e.g. discover.tfquery.hcl, then:
#   terraform query                                      # which of these hosts run a k3s agent
#   terraform query -generate-config-out=generated.tf    # plus import blocks and configuration
list "homelab_k3s_agent" "agents" {
  provider         = homelab
  include_resource = true
  config {
    addresses = ["10.0.3.21", "10.0.3.22", "10.0.3.23"]
  }
}
