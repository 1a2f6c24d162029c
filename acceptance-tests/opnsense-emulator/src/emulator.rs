//! Starting and stopping an emulator from tests (and from the CLI).
//!
//! The emulator runs on its own thread with its own tokio runtime, so `Emulator::start` works the same from plain
//! `#[test]`s and from inside another runtime (`#[tokio::test]`), and dropping the handle from either stops it. The
//! listener is bound before `start` returns, so `url()` is usable immediately (port 0 picks a free port).

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::watch;

use crate::app::App;
use crate::config::{Config, TlsMode};
use crate::error::Error;
use crate::faults::{FaultKind, FaultRule};

pub struct Emulator;

/// A running emulator. Dropping it stops the API and kills every haproxy it started.
pub struct EmulatorHandle {
    app: Arc<App>,
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    pub fn start(cfg: Config) -> Result<EmulatorHandle, Error> {
        let std_listener = std::net::TcpListener::bind(cfg.listen)
            .map_err(|e| Error::Io(format!("bind {}", cfg.listen), e))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| Error::Io("listener".into(), e))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| Error::Io("listener".into(), e))?;
        let (tls_cfg, ca_pem) = match &cfg.tls {
            TlsMode::Off => (None, None),
            TlsMode::Generate { hostnames } => {
                let g = crate::tls::generate(addr.ip(), hostnames)?;
                (
                    Some(crate::tls::server_config(&g.cert_pem, &g.key_pem)?),
                    Some(g.ca_pem),
                )
            }
            TlsMode::Files { cert, key } => {
                let c = std::fs::read_to_string(cert)
                    .map_err(|e| Error::Io(cert.display().to_string(), e))?;
                let k = std::fs::read_to_string(key)
                    .map_err(|e| Error::Io(key.display().to_string(), e))?;
                (Some(crate::tls::server_config(&c, &k)?), None)
            }
        };
        let tls = tls_cfg.is_some();
        let boot = cfg.start_haproxy_on_boot;
        let app = Arc::new(App::new(cfg)?);
        let (tx, rx) = watch::channel(false);
        let app2 = app.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), Error>>();
        let thread = std::thread::Builder::new()
            .name("opnsense-emulator".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(Error::Io("tokio runtime".into(), e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(std_listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(Error::Io("listener".into(), e)));
                            return;
                        }
                    };
                    if boot {
                        boot_haproxy(&app2).await;
                    }
                    if let Some(carp) = app2.cfg.carp.clone() {
                        if let Err(e) = crate::carp_engine::start(app2.clone(), &carp) {
                            let _ = ready_tx
                                .send(Err(Error::Io(format!("CARP socket {}", carp.listen), e)));
                            return;
                        }
                    }
                    let _ = ready_tx.send(Ok(()));
                    crate::server::serve(listener, app2, tls_cfg, rx).await;
                });
            })
            .map_err(|e| Error::Io("spawn emulator thread".into(), e))?;
        ready_rx
            .recv()
            .map_err(|_| Error::Config("emulator thread died".into()))??;
        Ok(EmulatorHandle {
            app,
            addr,
            tls,
            ca_pem,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }
}

/// A box that boots with HAProxy enabled starts it from the saved configuration.
async fn boot_haproxy(app: &App) {
    let st = app.snapshot().await;
    if st.haproxy.values.get("general.enabled").map(String::as_str) == Some("1")
        && !app.runner.is_running()
    {
        if let Err(e) = app.runner.render_staging(&st.haproxy) {
            tracing::warn!("boot: {e}");
            return;
        }
        if let Err(e) = app.runner.start().await {
            tracing::warn!("boot: {e}");
        }
    }
}

impl EmulatorHandle {
    /// Base URL, e.g. `https://127.0.0.1:40123` (no trailing slash; API paths start with `/api/`).
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that signed the server certificate (only with [`TlsMode::Generate`]).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn api_key(&self) -> &str {
        &self.app.cfg.api_key
    }

    pub fn api_secret(&self) -> &str {
        &self.app.cfg.api_secret
    }

    pub fn config(&self) -> &Config {
        &self.app.cfg
    }

    /// The address of the CARP engine's socket (with [`Config::carp`]).
    pub fn carp_addr(&self) -> Option<SocketAddr> {
        self.app.carp.local_addr()
    }

    /// Where this box sends its CARP advertisements.
    pub fn set_carp_peers(&self, peers: Vec<SocketAddr>) {
        self.app.carp.set_peers(peers);
    }

    /// The CARP state of each VHID (`vhid` → MASTER/BACKUP/INIT); empty without [`Config::carp`].
    pub fn carp_states(&self) -> std::collections::BTreeMap<u32, crate::carp::State> {
        self.app.carp.states()
    }

    /// Adds a fault rule.
    pub fn add_fault(&self, rule: FaultRule) {
        self.app.faults.add(rule);
    }

    /// Makes the next `times` calls to `endpoint` (e.g. `haproxy/settings/addServer`) fail with `kind`.
    pub fn fail_next(&self, endpoint: &str, kind: FaultKind, times: u32) {
        self.app
            .faults
            .add(FaultRule::new(Some(endpoint), kind).times(times));
    }

    /// Restarts the API now: open connections are cut and the port refuses connections for `down`.
    pub fn restart(&self, down: std::time::Duration) {
        let _ = self.app.restarts.send(down);
    }

    pub fn clear_faults(&self) {
        self.app.faults.clear();
    }

    /// The deployed (live) haproxy configuration, if any.
    pub fn haproxy_cfg(&self) -> Option<String> {
        std::fs::read_to_string(self.app.runner.live_path()).ok()
    }

    /// Pids of the running haproxy processes.
    pub fn haproxy_pids(&self) -> Vec<i32> {
        self.app.runner.running_pids()
    }

    /// Every API call so far as `METHOD path -> status`.
    pub fn calls(&self) -> Vec<String> {
        self.app
            .calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|c| format!("{} {} -> {}", c.method, c.path, c.status))
            .collect()
    }

    /// Stops the API, then kills haproxy.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.app.runner.kill_all();
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
