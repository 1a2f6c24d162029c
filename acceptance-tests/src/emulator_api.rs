//! Talking to an OPNsense emulator the way an admin does in the UI: plain HTTP with the API key, for the checks
//! and out-of-band edits of the acceptance tests (counting objects, editing one by hand, reading the call log's
//! effects). The provider under test never uses this: it has its own client.
//!
//! Why a hand-written HTTP/1.0 exchange instead of an HTTP client crate: each test makes a handful of calls to a
//! plain-HTTP emulator on loopback, and a blocking request/response over a `TcpStream` keeps the tests free of an
//! async runtime and of TLS set-up that would only get in the way.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A free TCP port on 127.0.0.1 (bound and released at once; tests never use fixed ports).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding a free port on 127.0.0.1")
        .local_addr()
        .expect("the bound port's address")
        .port()
}

/// An admin's API access to one emulator: its address and key pair.
#[derive(Debug, Clone)]
pub struct AdminApi {
    addr: SocketAddr,
    auth: String,
    /// How long a refused connection is retried (an API restarting after a fault), like an admin reloading the
    /// page; zero by default.
    wait: Duration,
}

impl AdminApi {
    pub fn new(addr: SocketAddr, key: &str, secret: &str) -> Self {
        AdminApi {
            addr,
            auth: base64(format!("{key}:{secret}").as_bytes()),
            wait: Duration::ZERO,
        }
    }

    /// Retry refused connections for up to `limit` (after a restart fault the API may still be down).
    pub fn waiting(mut self, limit: Duration) -> Self {
        self.wait = limit;
        self
    }

    /// One call; panics with the whole reply when it is not JSON (a test failure either way).
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.exchange(method, &format!("/api/{path}"), body)
    }

    /// One call to the emulator's own admin endpoints (`/__emulator/<path>`: faults, call log, restart), which no
    /// real OPNsense has.
    pub fn emulator(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        self.exchange(method, &format!("/__emulator/{path}"), body)
    }

    /// An admin endpoint that answers plain text (`haproxy.cfg`: the live file the emulator's haproxy runs).
    pub fn emulator_text(&self, path: &str) -> String {
        self.exchange_raw("GET", &format!("/__emulator/{path}"), None)
    }

    fn exchange(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let reply = self.exchange_raw(method, path, body);
        serde_json::from_str(&reply)
            .unwrap_or_else(|_| panic!("the emulator answered {method} {path} with:\n{reply}"))
    }

    fn exchange_raw(&self, method: &str, path: &str, body: Option<&Value>) -> String {
        let t = Instant::now();
        let mut s = loop {
            match TcpStream::connect(self.addr) {
                Ok(s) => break s,
                Err(e) if t.elapsed() >= self.wait => {
                    panic!("the emulator at {} is not answering: {e}", self.addr)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let body = match (method, body) {
            (_, Some(b)) => b.to_string(),
            ("POST", None) => "{}".to_string(),
            _ => String::new(),
        };
        let content_type = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/json\r\n"
        };
        write!(
            s,
            "{method} {path} HTTP/1.0\r\nHost: x\r\nAuthorization: Basic {}\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
            self.auth,
            body.len()
        )
        .expect("writing the request");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("reading the reply");
        let (_, reply) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        reply.to_string()
    }
}

/// Standard base64 with padding (the Basic auth header).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_examples() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }
}
