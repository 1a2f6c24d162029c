//! CARP: the election of which box of a pair holds a CARP VIP, as FreeBSD's carp(4) runs it on OPNsense.
//!
//! What a client and the network can observe on a real pair, and what this reproduces:
//!
//! - Every CARP VIP (`mode` carp, a `vhid`, `advbase`, `advskew`, `password`) is held by one box at a time, the
//!   MASTER; the other is BACKUP. A master advertises every `advbase + advskew/256` seconds; a backup that hears
//!   nothing for `3 × advbase + advskew/256` seconds (about 3 s with `advbase` 1) takes over. A master that hears a
//!   more frequent advertiser (lower `advbase`, then lower `advskew`) steps down to BACKUP.
//! - Preemption (`net.inet.carp.preempt`, which OPNsense sets from the HA settings: on unless `disablepreempt`):
//!   a backup that hears a master advertising *less* often than itself takes over at once. Without it a box that
//!   comes back with the better skew stays BACKUP while the other one keeps advertising.
//! - Maintenance mode (`diagnostics/interface/carp_status/maintenance`) demotes the box (its skew counts as 240, the
//!   `net.inet.carp.demotion` OPNsense sets), so the peer takes over; `disable` drops out of CARP altogether
//!   (`net.inet.carp.allow=0`: every CARP VIP DISABLED and released), `enable` rejoins.
//! - Advertisements carry an HMAC keyed with the VIP's password; one with a wrong HMAC is ignored, as carp(4) does
//!   (a pair with mismatched passwords ends with both boxes MASTER).
//! - The status is read where OPNsense's own status page reads it: `diagnostics/interface/get_vip_status`
//!   (core's `Diagnostics\Api\InterfaceController::getVipStatusAction`: one row per VIP with a vhid, `status`
//!   MASTER/BACKUP/INIT/DISABLED, plus `carp` = `{demotion, allow, maintenancemode, status_msg}`).
//!
//! How the addresses move: the holder runs `ip addr add <vip> dev <device>` and sends a gratuitous ARP from that
//! device, so neighbours and the lab's switch follow the move at once (without it, hosts would keep the dead box's
//! MAC until their ARP entry expires, tens of seconds); the box stepping down runs `ip addr del`. A backup's
//! haproxy still binds the VIP (on FreeBSD the CARP address is configured on the backup too); on Linux that is
//! `net.ipv4.ip_nonlocal_bind=1`, which the lab sets on its load-balancer hosts.
//!
//! The wire: advertisements are small JSON datagrams over UDP, sent unicast to the configured peers (OPNsense's
//! VIPs have a unicast `peer` option for networks without multicast). Why not the real protocol 112 multicast to
//! 224.0.0.18: raw IP sockets and multicast routes in every test namespace, and tests of the election on loopback
//! (where two emulators share one address family and interface) would not work; what the election decides and when
//! is the same. Ties (same `advbase` and `advskew`) are broken by the sender's address (the lower one stays
//! master), where carp(4) would let both step down and flap.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The CARP engine's setup: where it listens for advertisements and whom it sends them to.
#[derive(Debug, Clone)]
pub struct CarpConfig {
    /// UDP address of this box's CARP socket (port 0 picks one; see [`crate::EmulatorHandle::carp_addr`]).
    pub listen: SocketAddr,
    /// The peers' CARP sockets (can also be set after start: [`crate::EmulatorHandle::set_carp_peers`]).
    pub peers: Vec<SocketAddr>,
}

/// The skew a box in maintenance mode advertises with (OPNsense sets `net.inet.carp.demotion` to 240).
pub(crate) const MAINTENANCE_DEMOTION: u32 = 240;
/// How often the engine looks at its timers.
pub(crate) const TICK: Duration = Duration::from_millis(50);

/// A VHID's state, as `ifconfig` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum State {
    #[serde(rename = "INIT")]
    Init,
    #[serde(rename = "BACKUP")]
    Backup,
    #[serde(rename = "MASTER")]
    Master,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
        }
    }
}

/// One CARP VIP as the engine runs it.
#[derive(Debug, Clone)]
pub(crate) struct Vhid {
    pub(crate) state: State,
    pub(crate) advbase: u32,
    pub(crate) advskew: u32,
    pub(crate) password: String,
    /// "address/bits".
    pub(crate) address: String,
    /// The device the address goes on (from the VIP's interface), when the emulator manages interfaces.
    pub(crate) device: Option<String>,
    pub(crate) held: bool,
    pub(crate) next_ad: Instant,
    pub(crate) master_down_at: Instant,
}

/// The shared CARP status of a box: what `get_vip_status` reports and the switches the API flips.
#[derive(Debug, Default)]
pub struct Carp {
    pub(crate) vhids: Mutex<BTreeMap<u32, Vhid>>,
    pub(crate) peers: Mutex<Vec<SocketAddr>>,
    pub(crate) local: Mutex<Option<SocketAddr>>,
    /// `net.inet.carp.allow` = 0 after `carp_status/disable`.
    pub(crate) disallowed: AtomicBool,
    pub(crate) maintenance: AtomicBool,
    /// Whether an engine runs at all (a box without [`CarpConfig`] keeps CARP VIPs as plain addresses).
    pub(crate) running: AtomicBool,
}

/// One advertisement on the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Advert {
    pub(crate) vhid: u32,
    pub(crate) advbase: u32,
    /// Skew including the demotion.
    pub(crate) advskew: u32,
    /// HMAC-SHA1 over "vhid/advbase/advskew" keyed with the VIP's password, hex.
    pub(crate) hmac: String,
}

pub(crate) fn hmac(password: &str, vhid: u32, advbase: u32, advskew: u32) -> String {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        password.as_bytes(),
    );
    let tag = ring::hmac::sign(&key, format!("{vhid}/{advbase}/{advskew}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Interval in 1/256 s, carp(4)'s `advbase + advskew/256`.
pub(crate) fn interval(advbase: u32, advskew: u32) -> u32 {
    advbase * 256 + advskew
}

pub(crate) fn ticks(n: u32) -> Duration {
    Duration::from_micros(u64::from(n) * 1_000_000 / 256)
}

/// How long a backup waits without advertisements before it takes over: `3 × advbase + advskew/256`.
pub(crate) fn master_down(advbase: u32, advskew: u32) -> Duration {
    ticks(3 * advbase * 256 + advskew)
}

/// What a box does with an advertisement it heard, given its own state and interval. Pure: the election rule.
pub fn on_advert(
    state: State,
    ours: u32,
    theirs: u32,
    our_addr_lower: bool,
    preempt: bool,
    advbase: u32,
) -> Decision {
    match state {
        State::Master => {
            if theirs < ours || (theirs == ours && !our_addr_lower) {
                Decision::StepDown
            } else {
                Decision::Stay
            }
        }
        State::Backup | State::Init => {
            if preempt && (theirs > ours || (theirs == ours && our_addr_lower)) {
                Decision::TakeOver
            } else if theirs > 3 * advbase * 256 {
                // the master advertises so rarely that it is bound to time out
                Decision::TakeOver
            } else {
                Decision::ResetTimer
            }
        }
    }
}

/// See [`on_advert`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Stay,
    StepDown,
    TakeOver,
    ResetTimer,
}

impl Carp {
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        *self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_peers(&self, peers: Vec<SocketAddr>) {
        *self.peers.lock().unwrap_or_else(|e| e.into_inner()) = peers;
    }

    /// The state of each VHID this box runs (`vhid` → state); empty without an engine.
    pub fn states(&self) -> BTreeMap<u32, State> {
        self.vhids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (*k, v.state))
            .collect()
    }

    pub fn allowed(&self) -> bool {
        !self.disallowed.load(Ordering::SeqCst)
    }

    pub fn in_maintenance(&self) -> bool {
        self.maintenance.load(Ordering::SeqCst)
    }

    pub(crate) fn demotion(&self) -> u32 {
        if self.in_maintenance() {
            MAINTENANCE_DEMOTION
        } else {
            0
        }
    }

    /// `carp_status/<action>` (carp_set_status.php): `maintenance` toggles, `disable`, `enable`.
    pub fn set_status(&self, action: &str) -> Option<&'static str> {
        match action {
            "maintenance" => {
                let was = self.maintenance.fetch_xor(true, Ordering::SeqCst);
                Some(if was {
                    "leave_maintenance"
                } else {
                    "enter_maintenance"
                })
            }
            "disable" => {
                self.disallowed.store(true, Ordering::SeqCst);
                Some("disable")
            }
            "enable" => {
                self.disallowed.store(false, Ordering::SeqCst);
                Some("enable")
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_more_frequent_advertiser_wins() {
        // master hears a faster one: steps down; a slower one: stays
        assert_eq!(
            on_advert(State::Master, 256 + 100, 256, false, true, 1),
            Decision::StepDown
        );
        assert_eq!(
            on_advert(State::Master, 256, 256 + 100, false, true, 1),
            Decision::Stay
        );
        // a tie goes to the lower address
        assert_eq!(
            on_advert(State::Master, 256, 256, true, true, 1),
            Decision::Stay
        );
        assert_eq!(
            on_advert(State::Master, 256, 256, false, true, 1),
            Decision::StepDown
        );
    }

    #[test]
    fn a_backup_preempts_a_slower_master_only_with_preempt() {
        assert_eq!(
            on_advert(State::Backup, 256, 356, false, true, 1),
            Decision::TakeOver
        );
        assert_eq!(
            on_advert(State::Backup, 256, 356, false, false, 1),
            Decision::ResetTimer
        );
        assert_eq!(
            on_advert(State::Backup, 356, 256, false, true, 1),
            Decision::ResetTimer
        );
        // a master advertising less often than every 3 × advbase is bound to time out
        assert_eq!(
            on_advert(State::Backup, 256, 4 * 256, false, false, 1),
            Decision::TakeOver
        );
    }

    #[test]
    fn timers_follow_advbase_and_advskew() {
        assert_eq!(master_down(1, 0), Duration::from_secs(3));
        assert_eq!(ticks(interval(1, 128)), Duration::from_millis(1500));
        assert_ne!(hmac("a", 1, 1, 0), hmac("b", 1, 1, 0));
    }
}
