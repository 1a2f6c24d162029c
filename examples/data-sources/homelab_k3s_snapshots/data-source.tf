# The etcd snapshots on the first server, newest first: scheduled ones and the provider's own
# homelab-pre-upgrade-* / homelab-pre-remove-* snapshots.
data "homelab_k3s_snapshots" "control_1" {
  host {
    address = "10.0.3.2"
  }
}

output "newest_snapshot" {
  description = "Path of the newest snapshot, for `k3s server --cluster-reset --cluster-reset-restore-path=...`."
  value       = try(data.homelab_k3s_snapshots.control_1.snapshots[0].path, null)
}
