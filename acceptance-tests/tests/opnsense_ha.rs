//! The HA pair through real Terraform: two OPNsense emulators, `homelab_opnsense_hasync` on the primary pointing at
//! the secondary. The settings land on the primary (password in state, sensitive, on 1.0.3; write-only and out of
//! state on 1.15), refresh and plan stay empty although OPNsense returns the password, and the sync they describe
//! works: the primary's HAProxy configuration, made by the provider, is live on the secondary's real haproxy after
//! `core/hasync_status/restart/haproxy`. Every address is on loopback.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use homelab_acceptance::terraform::{hcl_string, required_providers};
use homelab_acceptance::{Action, Step, TerraformVersion, TestCase};
use opnsense_emulator::{Config, Emulator, EmulatorHandle};
use serde_json::Value;

const KEY: &str = "ha-key-primary";
const SECRET: &str = "ha-secret-primary-0c41";
const HA_PASSWORD: &str = "ha-user-pass-77d1";

fn emulator(dir: &std::path::Path, xmlrpc: bool) -> EmulatorHandle {
    let mut cfg = Config::new(
        "127.0.0.1:0".parse().unwrap(),
        dir.join("config.json"),
        KEY,
        SECRET,
    );
    if xmlrpc {
        cfg.xmlrpc_credentials = Some(("hasync".into(), HA_PASSWORD.into()));
    }
    Emulator::start(cfg).unwrap()
}

fn api(addr: SocketAddr, method: &str, path: &str) -> Value {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let auth = base64(format!("{KEY}:{SECRET}").as_bytes());
    let body = if method == "POST" { "{}" } else { "" };
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        s,
        "{method} /api/{path} HTTP/1.0\r\nHost: x\r\nAuthorization: Basic {auth}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (_, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    serde_json::from_str(body).unwrap_or_else(|_| panic!("{method} {path}: {out}"))
}

/// Standard base64 (the test crate has no base64 dependency).
fn base64(data: &[u8]) -> String {
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

fn config(primary: &EmulatorHandle, backup: &EmulatorHandle, password: &str) -> String {
    format!(
        r#"{}
provider "homelab" {{
  opnsense {{
    url        = {}
    api_key    = {}
    api_secret = {}
  }}
}}
resource "homelab_opnsense_hasync" "this" {{
  peer       = {}
  username   = "hasync"
  {password}
  sync_items = ["haproxy", "virtualip"]
}}
resource "homelab_opnsense_haproxy_settings" "this" {{
  enabled = true
}}
resource "homelab_opnsense_haproxy_server" "k3s" {{
  name    = "k3s-control-1"
  address = "127.0.6.11"
  port    = 6443
}}
resource "homelab_opnsense_haproxy_backend" "k3s" {{
  name    = "k3s_servers"
  mode    = "tcp"
  servers = [homelab_opnsense_haproxy_server.k3s.id]
}}
resource "homelab_opnsense_haproxy_frontend" "k3s" {{
  name            = "k3s_api"
  bind            = ["127.0.6.100:6443"]
  mode            = "tcp"
  default_backend = homelab_opnsense_haproxy_backend.k3s.id
}}
"#,
        required_providers(),
        hcl_string(&primary.url()),
        hcl_string(KEY),
        hcl_string(SECRET),
        hcl_string(&backup.url()),
    )
}

fn pair_case(version: TerraformVersion, password: &str, write_only: bool) {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let primary = emulator(d1.path(), false);
    let backup = emulator(d2.path(), true);
    let (p, b) = (primary.addr(), backup.addr());
    let hcl = config(&primary, &backup, password);
    TestCase::new(version)
        .step(
            Step::config(hcl.clone())
                .named("HA sync settings on the primary")
                .expect_action("homelab_opnsense_hasync.this", Action::Create)
                .check(move |st| {
                    let got = api(p, "GET", "core/hasync/get");
                    let h = &got["hasync"];
                    if h["password"] != HA_PASSWORD || h["syncitems"]["haproxy"]["selected"] != 1 {
                        return Err(format!("the primary's HA settings are {}", h["syncitems"]));
                    }
                    let in_state = st.attr("homelab_opnsense_hasync.this", "password").cloned();
                    match (write_only, in_state) {
                        (true, Some(Value::Null) | None) => Ok(()),
                        (false, Some(Value::String(s))) if s == HA_PASSWORD => Ok(()),
                        (w, other) => {
                            Err(format!("write_only={w}: password in state is {other:?}"))
                        }
                    }
                }),
        )
        .step(
            Step::config(hcl)
                .named("the synced HAProxy configuration is live on the secondary")
                .before(move |tf, _| {
                    if write_only {
                        let raw = tf
                            .read_file("terraform.tfstate")
                            .map_err(|e| e.to_string())?;
                        if raw.contains(HA_PASSWORD) {
                            return Err("terraform.tfstate holds the HA password".into());
                        }
                    }
                    let r = api(p, "POST", "core/hasync_status/restart/haproxy");
                    if r["status"] != "ok" {
                        return Err(format!("sync failed: {r}"));
                    }
                    let fe = api(b, "GET", "haproxy/settings/searchFrontends");
                    if fe["rows"][0]["name"] != "k3s_api" {
                        return Err(format!("the secondary has no synced frontend: {fe}"));
                    }
                    let st = api(b, "GET", "haproxy/service/status");
                    if st["status"] != "running" {
                        return Err(format!("the secondary's haproxy is {st}"));
                    }
                    Ok(())
                }),
        )
        .run();
    let live = backup
        .haproxy_cfg()
        .expect("haproxy deployed on the secondary");
    assert!(live.contains("127.0.6.100:6443"), "{live}");
}

#[test]
fn hasync_settings_and_the_sync_they_drive_terraform_1_15_write_only() {
    if TerraformVersion::selected().contains(&TerraformVersion::V1_15) {
        pair_case(
            TerraformVersion::V1_15,
            &format!("password_wo = \"{HA_PASSWORD}\"\n  password_wo_version = 1"),
            true,
        );
    }
}

#[test]
fn hasync_settings_and_the_sync_they_drive_terraform_1_0_sensitive() {
    if TerraformVersion::selected().contains(&TerraformVersion::V1_0) {
        pair_case(
            TerraformVersion::V1_0,
            &format!("password = \"{HA_PASSWORD}\""),
            false,
        );
    }
}
