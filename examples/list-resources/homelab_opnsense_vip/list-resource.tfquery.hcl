# Save as e.g. discover.tfquery.hcl, then:
#   terraform query                                      # list what is on the OPNsense
#   terraform query -generate-config-out=generated.tf    # plus import blocks and configuration
list "homelab_opnsense_vip" "all" {
  provider = homelab
  # Also return each object's attributes (needed for -generate-config-out).
  include_resource = true
}
