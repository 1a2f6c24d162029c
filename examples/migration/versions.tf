terraform {
  # import {} blocks with for_each (1.7+) bring the hand-made nodes under management in step 2.
  required_version = ">= 1.7"

  required_providers {
    homelab = {
      source = "terraform.local/homelab/homelab"
    }
  }
}
