# The admin kubeconfig of a server, pointed at the VIP, read in each plan and apply and never stored in the
# state (Terraform 1.10 or later). Use it where Terraform accepts ephemeral values: a provider block, e.g.
#   provider "kubernetes" {
#     host               = yamldecode(ephemeral.homelab_k3s_kubeconfig.cluster.kubeconfig).clusters[0].cluster.server
#     client_key         = base64decode(yamldecode(ephemeral.homelab_k3s_kubeconfig.cluster.kubeconfig).users[0].user["client-key-data"])
#     ...
#   }
# or, as here, a provisioner's environment (its output is suppressed because the value is ephemeral).
ephemeral "homelab_k3s_kubeconfig" "cluster" {
  server = "https://10.0.3.100:6443"

  host {
    address = "10.0.3.2"
  }
}

resource "terraform_data" "wait_for_nodes" {
  provisioner "local-exec" {
    environment = {
      KUBECONFIG_DATA = ephemeral.homelab_k3s_kubeconfig.cluster.kubeconfig
    }
    command = "f=$(mktemp) && printf '%s' \"$KUBECONFIG_DATA\" > $f && kubectl --kubeconfig $f wait --for=condition=Ready nodes --all; r=$?; rm -f $f; exit $r"
  }
}
