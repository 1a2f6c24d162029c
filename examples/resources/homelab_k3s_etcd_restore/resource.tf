# Restore the cluster of three servers to the snapshot the provider took before an upgrade. The server that
# initialised the cluster resets from the snapshot; the two that joined through it have their datastore moved to
# /var/backups/k3s/ and rejoin, one at a time. Agents are not touched. Review `steps` in the plan.
#
# Find the name with `data "homelab_k3s_snapshots"` and write it here literally: an expression such as "the newest
# snapshot" would change with the next snapshot k3s takes, and a changed `snapshot` restores again.
resource "homelab_k3s_etcd_restore" "before_upgrade" {
  snapshot = "homelab-pre-upgrade-k8s-control-1-1765011234"

  # Raise to restore again (the same or another snapshot).
  restore_version = 1

  host {
    address = "10.0.3.2"
  }
  rejoin {
    address = "10.0.3.3"
  }
  rejoin {
    address = "10.0.3.4"
  }

  timeouts {
    create = "30m"
  }
}
