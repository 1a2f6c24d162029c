# The id is the rule's UUID or its description.
import {
  to = homelab_opnsense_firewall_rule.k3s_to_vip
  id = "k3s nodes to the control-plane VIP"
}
