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
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;

use crate::app::App;
use crate::config::VipMode;

/// The CARP engine's setup: where it listens for advertisements and whom it sends them to.
#[derive(Debug, Clone)]
pub struct CarpConfig {
    /// UDP address of this box's CARP socket (port 0 picks one; see [`crate::EmulatorHandle::carp_addr`]).
    pub listen: SocketAddr,
    /// The peers' CARP sockets (can also be set after start: [`crate::EmulatorHandle::set_carp_peers`]).
    pub peers: Vec<SocketAddr>,
}

/// The skew a box in maintenance mode advertises with (OPNsense sets `net.inet.carp.demotion` to 240).
const MAINTENANCE_DEMOTION: u32 = 240;
/// How often the engine looks at its timers.
const TICK: Duration = Duration::from_millis(50);

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
struct Vhid {
    state: State,
    advbase: u32,
    advskew: u32,
    password: String,
    /// "address/bits".
    address: String,
    /// The device the address goes on (from the VIP's interface), when the emulator manages interfaces.
    device: Option<String>,
    held: bool,
    next_ad: Instant,
    master_down_at: Instant,
}

/// The shared CARP status of a box: what `get_vip_status` reports and the switches the API flips.
#[derive(Debug, Default)]
pub struct Carp {
    vhids: Mutex<BTreeMap<u32, Vhid>>,
    peers: Mutex<Vec<SocketAddr>>,
    local: Mutex<Option<SocketAddr>>,
    /// `net.inet.carp.allow` = 0 after `carp_status/disable`.
    disallowed: AtomicBool,
    maintenance: AtomicBool,
    /// Whether an engine runs at all (a box without [`CarpConfig`] keeps CARP VIPs as plain addresses).
    running: AtomicBool,
}

/// One advertisement on the wire.
#[derive(Debug, Serialize, Deserialize)]
struct Advert {
    vhid: u32,
    advbase: u32,
    /// Skew including the demotion.
    advskew: u32,
    /// HMAC-SHA1 over "vhid/advbase/advskew" keyed with the VIP's password, hex.
    hmac: String,
}

fn hmac(password: &str, vhid: u32, advbase: u32, advskew: u32) -> String {
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
        password.as_bytes(),
    );
    let tag = ring::hmac::sign(&key, format!("{vhid}/{advbase}/{advskew}").as_bytes());
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Interval in 1/256 s, carp(4)'s `advbase + advskew/256`.
fn interval(advbase: u32, advskew: u32) -> u32 {
    advbase * 256 + advskew
}

fn ticks(n: u32) -> Duration {
    Duration::from_micros(u64::from(n) * 1_000_000 / 256)
}

/// How long a backup waits without advertisements before it takes over: `3 × advbase + advskew/256`.
fn master_down(advbase: u32, advskew: u32) -> Duration {
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

    fn demotion(&self) -> u32 {
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

/// Starts the engine on the emulator's runtime: binds the socket now (so its address is known at once).
pub fn start(app: Arc<App>, cfg: &CarpConfig) -> std::io::Result<()> {
    let std_sock = std::net::UdpSocket::bind(cfg.listen)?;
    std_sock.set_nonblocking(true)?;
    let local = std_sock.local_addr()?;
    *app.carp.local.lock().unwrap_or_else(|e| e.into_inner()) = Some(local);
    app.carp.set_peers(cfg.peers.clone());
    app.carp.running.store(true, Ordering::SeqCst);
    let sock = UdpSocket::from_std(std_sock)?;
    tokio::spawn(run(app, sock));
    Ok(())
}

/// The CARP VIPs of the saved configuration: vhid → (advbase, advskew, password, address, device).
fn configured(
    app: &App,
    st: &crate::store::State,
) -> BTreeMap<u32, (u32, u32, String, String, Option<String>)> {
    let map = match &app.cfg.vip_mode {
        VipMode::Interfaces(m) => Some(m),
        VipMode::None => None,
    };
    st.vip
        .items("vip")
        .iter()
        .filter(|i| i.get("mode") == "carp")
        .filter_map(|i| {
            let vhid = i.get("vhid").parse::<u32>().ok()?;
            let advbase = i.get("advbase").parse::<u32>().unwrap_or(1).max(1);
            let advskew = i.get("advskew").parse::<u32>().unwrap_or(0);
            let address = format!("{}/{}", i.get("subnet"), i.get("subnet_bits"));
            let device = map.and_then(|m| m.get(i.get("interface")).cloned());
            Some((
                vhid,
                (
                    advbase,
                    advskew,
                    i.get("password").to_string(),
                    address,
                    device,
                ),
            ))
        })
        .collect()
}

fn preempt(st: &crate::store::State) -> bool {
    st.hasync
        .values
        .get("hasync.disablepreempt")
        .map(String::as_str)
        != Some("1")
}

async fn run(app: Arc<App>, sock: UdpSocket) {
    let mut buf = vec![0u8; 2048];
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            r = sock.recv_from(&mut buf) => {
                if let Ok((n, from)) = r {
                    if let Ok(ad) = serde_json::from_slice::<Advert>(&buf[..n]) {
                        heard(&app, &sock, ad, from).await;
                    }
                }
            }
            _ = tick.tick() => step(&app, &sock).await,
        }
    }
}

/// Timers: reconcile with the configuration, masters advertise, silent masters are taken over.
async fn step(app: &App, sock: &UdpSocket) {
    let st = app.snapshot().await;
    let want = configured(app, &st);
    let now = Instant::now();
    let allowed = app.carp.allowed();
    let demotion = app.carp.demotion();
    let mut take = Vec::new();
    let mut release = Vec::new();
    let mut send = Vec::new();
    {
        let mut vhids = app.carp.vhids.lock().unwrap_or_else(|e| e.into_inner());
        vhids.retain(|k, v| {
            let keep = want.contains_key(k) && allowed;
            if !keep && v.held {
                release.push((v.address.clone(), v.device.clone()));
            }
            keep
        });
        let want = if allowed { want } else { BTreeMap::new() };
        for (vhid, (advbase, advskew, password, address, device)) in want {
            let v = vhids.entry(vhid).or_insert_with(|| Vhid {
                state: State::Init,
                advbase,
                advskew,
                password: password.clone(),
                address: address.clone(),
                device: device.clone(),
                held: false,
                next_ad: now,
                master_down_at: now + master_down(advbase, advskew + demotion),
            });
            if v.address != address && v.held {
                release.push((v.address.clone(), v.device.clone()));
                v.held = false;
            }
            v.advbase = advbase;
            v.advskew = advskew;
            v.password = password;
            v.address = address;
            v.device = device;
            let skew = (v.advskew + demotion).min(254);
            match v.state {
                State::Init => {
                    v.state = State::Backup;
                    v.master_down_at = now + master_down(v.advbase, skew);
                }
                State::Backup => {
                    if now >= v.master_down_at {
                        tracing::info!("carp: vhid {vhid} BACKUP -> MASTER (master down)");
                        v.state = State::Master;
                        v.next_ad = now;
                    }
                }
                State::Master => {}
            }
            if v.state == State::Master {
                if !v.held {
                    v.held = true;
                    take.push((v.address.clone(), v.device.clone()));
                }
                if now >= v.next_ad {
                    send.push(Advert {
                        vhid,
                        advbase: v.advbase,
                        advskew: skew,
                        hmac: hmac(&v.password, vhid, v.advbase, skew),
                    });
                    v.next_ad = now + ticks(interval(v.advbase, skew));
                }
            }
        }
    }
    finish(app, take, release, send, sock).await;
}

type Moves = Vec<(String, Option<String>)>;

async fn finish(app: &App, take: Moves, release: Moves, send: Vec<Advert>, sock: &UdpSocket) {
    for (addr, dev) in release {
        if let Some(dev) = dev {
            crate::api::vip::ip_addr(
                app.cfg.vip_netns.as_deref(),
                "del",
                &format!("{addr} {dev}"),
            )
            .await;
        }
    }
    for (addr, dev) in take {
        if let Some(dev) = dev {
            let entry = format!("{addr} {dev}");
            if crate::api::vip::ip_addr(app.cfg.vip_netns.as_deref(), "add", &entry).await
                && app.cfg.vip_netns.is_none()
            {
                if let Some(ip) = addr.split('/').next().and_then(|a| a.parse().ok()) {
                    if let Err(e) = gratuitous_arp(&dev, ip) {
                        tracing::warn!("carp: gratuitous ARP for {ip} on {dev}: {e}");
                    }
                }
            }
        }
    }
    let peers = app
        .carp
        .peers
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for ad in send {
        let Ok(bytes) = serde_json::to_vec(&ad) else {
            continue;
        };
        for p in &peers {
            let _ = sock.send_to(&bytes, p).await;
        }
    }
}

/// An advertisement from a peer: the election rule of [`on_advert`].
async fn heard(app: &App, sock: &UdpSocket, ad: Advert, from: SocketAddr) {
    let st = app.snapshot().await;
    let preempt = preempt(&st);
    let demotion = app.carp.demotion();
    let now = Instant::now();
    let our_addr_lower = app.carp.local_addr().is_some_and(|l| l < from);
    let mut release = Vec::new();
    let mut take = Vec::new();
    let mut send = Vec::new();
    {
        let mut vhids = app.carp.vhids.lock().unwrap_or_else(|e| e.into_inner());
        let Some(v) = vhids.get_mut(&ad.vhid) else {
            return;
        };
        if hmac(&v.password, ad.vhid, ad.advbase, ad.advskew) != ad.hmac {
            tracing::debug!(
                "carp: vhid {}: advertisement with a bad HMAC ignored",
                ad.vhid
            );
            return;
        }
        let skew = (v.advskew + demotion).min(254);
        let ours = interval(v.advbase, skew);
        let theirs = interval(ad.advbase, ad.advskew);
        match on_advert(v.state, ours, theirs, our_addr_lower, preempt, v.advbase) {
            Decision::Stay => {}
            Decision::StepDown => {
                tracing::info!(
                    "carp: vhid {} MASTER -> BACKUP (more frequent advertisement)",
                    ad.vhid
                );
                v.state = State::Backup;
                v.master_down_at = now + master_down(v.advbase, skew);
                if v.held {
                    v.held = false;
                    release.push((v.address.clone(), v.device.clone()));
                }
            }
            Decision::TakeOver => {
                tracing::info!(
                    "carp: vhid {} BACKUP -> MASTER (preempting a slower master)",
                    ad.vhid
                );
                v.state = State::Master;
                v.held = true;
                take.push((v.address.clone(), v.device.clone()));
                send.push(Advert {
                    vhid: ad.vhid,
                    advbase: v.advbase,
                    advskew: skew,
                    hmac: hmac(&v.password, ad.vhid, v.advbase, skew),
                });
                v.next_ad = now + ticks(ours);
            }
            Decision::ResetTimer => {
                v.state = State::Backup;
                v.master_down_at = now + master_down(v.advbase, skew);
            }
        }
    }
    finish(app, take, release, send, sock).await;
}

/// A gratuitous ARP request ("who has <ip>? tell <ip>") broadcast from `dev`, so that neighbours and switches learn
/// the address's new MAC at once.
fn gratuitous_arp(dev: &str, ip: std::net::Ipv4Addr) -> std::io::Result<()> {
    let mac = std::fs::read_to_string(format!("/sys/class/net/{dev}/address"))?;
    let mac: Vec<u8> = mac
        .trim()
        .split(':')
        .filter_map(|h| u8::from_str_radix(h, 16).ok())
        .collect();
    if mac.len() != 6 {
        return Err(std::io::Error::other("no MAC address"));
    }
    let ifindex = {
        let c = std::ffi::CString::new(dev).map_err(std::io::Error::other)?;
        // SAFETY: c is a valid NUL-terminated string.
        unsafe { libc::if_nametoindex(c.as_ptr()) }
    };
    if ifindex == 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut frame = Vec::with_capacity(42);
    frame.extend_from_slice(&[0xff; 6]);
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&[0x08, 0x06]); // ARP
    frame.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01]); // Ethernet/IPv4, request
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&ip.octets());
    frame.extend_from_slice(&[0; 6]);
    frame.extend_from_slice(&ip.octets());
    // SAFETY: plain socket calls with valid, sized arguments; the fd is closed before returning.
    unsafe {
        let fd = libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut addr: libc::sockaddr_ll = std::mem::zeroed();
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = 0x0806u16.to_be();
        addr.sll_ifindex = ifindex as i32;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
        let r = libc::sendto(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            0,
            (&addr as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as u32,
        );
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return Err(err);
        }
    }
    Ok(())
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
