//! Helpers shared by the emulator's integration tests: a small API client and a TCP echo backend.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use opnsense_emulator::{Config, Emulator, EmulatorHandle};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
    key: String,
    secret: String,
}

impl Api {
    pub fn new(emu: &EmulatorHandle) -> Api {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        Api {
            client,
            base: emu.url(),
            key: emu.api_key().to_string(),
            secret: emu.api_secret().to_string(),
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}/api/{path}", self.base))
            .basic_auth(&self.key, Some(&self.secret))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    pub async fn post_raw(&self, path: &str, body: Value) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(format!("{}/api/{path}", self.base))
            .basic_auth(&self.key, Some(&self.secret))
            .json(&body)
            .send()
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        self.post_raw(path, body)
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// POST that must answer `{"result":"saved"...}`; returns the uuid when there is one.
    pub async fn saved(&self, path: &str, body: Value) -> String {
        let r = self.post(path, body).await;
        assert_eq!(r["result"], "saved", "{path}: {r}");
        r["uuid"].as_str().unwrap_or_default().to_string()
    }
}

/// An emulator for tests: plain HTTP on 127.0.0.1, state in `dir`.
pub fn emulator(dir: &std::path::Path) -> EmulatorHandle {
    let cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.join("state.json"),
        "key",
        "secret",
    );
    Emulator::start(cfg).unwrap()
}

/// A TCP server that answers every line with `<tag>:<line>`; returns its address.
pub async fn echo_server(ip: &str, tag: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind(format!("{ip}:0"))
        .await
        .unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let mut out = format!("{tag}:").into_bytes();
                            out.extend_from_slice(&buf[..n]);
                            if s.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

/// Sends `msg` through `addr` and returns the reply (None if the connection fails).
pub async fn roundtrip(addr: &str, msg: &str) -> Option<String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(msg.as_bytes()).await.ok()?;
        let mut buf = vec![0u8; 1024];
        let n = s.read(&mut buf).await.ok()?;
        if n == 0 {
            return None;
        }
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    };
    tokio::time::timeout(Duration::from_secs(5), fut)
        .await
        .ok()
        .flatten()
}

/// Waits until `addr` passes traffic.
pub async fn wait_for_traffic(addr: &str) -> Option<String> {
    for _ in 0..100 {
        if let Some(r) = roundtrip(addr, "ping").await {
            return Some(r);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}
