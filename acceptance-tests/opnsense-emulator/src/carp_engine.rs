//! The CARP engine: the task that runs the election of [`crate::carp`] on the network — it reads the CARP VIPs from
//! the saved configuration, sends and hears advertisements over UDP, and moves the addresses (`ip addr`, a
//! gratuitous ARP) when this box becomes MASTER or steps down.
//!
//! Why apart from `carp`: the election's state lives in [`crate::app::App`] (the API flips its switches and reads its
//! status), while this engine reads the whole emulator (`App`: the saved VIPs, the HA settings). Keeping the two in
//! separate files keeps the imports one way: `app` → `carp` ← `carp_engine` → `app`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use tokio::net::UdpSocket;

use crate::app::App;
use crate::carp::*;
use crate::config::VipMode;

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

pub(crate) fn preempt(st: &crate::store::State) -> bool {
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
