//! `sd_notify(READY=1)`: how a `Type=notify` unit tells systemd (or the lab's stand-in) that it is ready.
//!
//! The install script's blocking `systemctl restart` and `systemctl is-active` (`activating` until ready) depend
//! on it, so servers send it only once they really serve, and joining nodes only once they have joined.

/// Send `msg` to `$NOTIFY_SOCKET` if set (abstract sockets start with `@`). Errors are ignored, like sd_notify.
pub fn notify(msg: &str) {
    let Ok(path) = std::env::var("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()) {
            let _ = sock.send_to_addr(msg.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(msg.as_bytes(), &path);
    }
}
