//! A systemd stand-in for lab hosts: enough of systemd that k3s's install script and our provider can drive
//! services the way they do on a real machine.
//!
//! Why not real systemd: it cannot run as PID 1 of a lab host without a full container setup (cgroups delegation,
//! a private /sys, dbus), and we only need the service-manager surface that scripts use. The pieces:
//! - [`unit`] parses unit files and environment files;
//! - [`supervisor`] is the daemon (PID 1 of the host) that runs units, with `Type=notify` readiness, restarts and
//!   the journal;
//! - [`ctl`] serves the control socket and implements `systemctl`'s verbs inside the daemon;
//! - [`client`] is the `systemctl`/`journalctl`/`systemd-notify` executable on the host;
//! - [`journal`] stores captured output.

pub mod client;
pub mod ctl;
pub mod journal;
pub mod supervisor;
pub mod unit;
