//! Shared state of a running emulator and the config lock.
//!
//! Writers take the lock, work on a copy of the state, save it atomically and only then publish it, so concurrent
//! writers are serialised and never lose each other's changes (OPNsense: `Config::lock()` = exclusive `flock` on
//! config.xml plus reload before edit). Readers take the lock only to copy what they need. Service actions
//! (configtest, reconfigure) take a snapshot and then run without the lock, so two of them can interleave, as
//! configd's one-thread-per-request does on a real box.

use std::sync::Mutex as StdMutex;

use tokio::sync::Mutex;

use crate::config::Config;
use crate::error::Error;
use crate::faults::Faults;
use crate::haproxy::Runner;
use crate::request::ApiResponse;
use crate::schema::Schema;
use crate::store::{ModelData, State, Store};

/// Which saved model a controller works on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    Haproxy,
    Vip,
    Alias,
    Filter,
}

impl ModelKind {
    pub fn data<'a>(&self, s: &'a State) -> &'a ModelData {
        match self {
            ModelKind::Haproxy => &s.haproxy,
            ModelKind::Vip => &s.vip,
            ModelKind::Alias => &s.alias,
            ModelKind::Filter => &s.filter,
        }
    }

    pub fn data_mut<'a>(&self, s: &'a mut State) -> &'a mut ModelData {
        match self {
            ModelKind::Haproxy => &mut s.haproxy,
            ModelKind::Vip => &mut s.vip,
            ModelKind::Alias => &mut s.alias,
            ModelKind::Filter => &mut s.filter,
        }
    }

    pub fn schema(&self) -> &'static Schema {
        match self {
            ModelKind::Haproxy => crate::schema::haproxy(),
            ModelKind::Vip => crate::schema::vip(),
            ModelKind::Alias => crate::schema::alias(),
            ModelKind::Filter => crate::schema::filter(),
        }
    }
}

/// One call as logged for tests (`GET /__emulator/calls`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct CallRecord {
    pub method: String,
    pub path: String,
    pub status: u16,
}

pub struct App {
    pub cfg: Config,
    pub store: Store,
    state: Mutex<State>,
    pub faults: Faults,
    pub runner: Runner,
    pub calls: StdMutex<Vec<CallRecord>>,
    /// Restart requests (the down time) for the accept loop, sent by a [`crate::faults::FaultKind::Restart`].
    pub restarts: tokio::sync::mpsc::UnboundedSender<std::time::Duration>,
    restart_rx: StdMutex<Option<tokio::sync::mpsc::UnboundedReceiver<std::time::Duration>>>,
    preset_uuids: StdMutex<std::collections::VecDeque<String>>,
    /// CARP status of the box (see [`crate::carp`]).
    pub carp: crate::carp::Carp,
}

impl App {
    pub fn new(cfg: Config) -> Result<App, Error> {
        let store = Store::new(cfg.state_file.clone());
        let state = store.load()?;
        let runner = Runner::new(cfg.haproxy_bin.clone(), cfg.haproxy_dir.clone())?;
        let preset_uuids = StdMutex::new(cfg.preset_uuids.iter().cloned().collect());
        let (restarts, restart_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(App {
            restarts,
            restart_rx: StdMutex::new(Some(restart_rx)),
            cfg,
            store,
            state: Mutex::new(state),
            faults: Faults::default(),
            runner,
            calls: StdMutex::new(Vec::new()),
            preset_uuids,
            carp: crate::carp::Carp::default(),
        })
    }

    /// UUID for a new item: the next preset one (replaying a recording), else a random v4 UUID.
    pub fn next_uuid(&self) -> String {
        self.preset_uuids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
            .unwrap_or_else(crate::model::new_uuid)
    }

    /// The receiving end of [`App::restarts`] (taken once, by the accept loop).
    pub fn take_restart_requests(
        &self,
    ) -> Option<tokio::sync::mpsc::UnboundedReceiver<std::time::Duration>> {
        self.restart_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// A copy of the saved state.
    pub async fn snapshot(&self) -> State {
        self.state.lock().await.clone()
    }

    /// Runs a read-only controller under the lock.
    pub async fn read<F: FnOnce(&State) -> ApiResponse>(&self, f: F) -> ApiResponse {
        let st = self.state.lock().await;
        f(&st)
    }

    /// Runs a mutating controller under the lock; when it reports a change the new state is saved (one revision)
    /// before anyone else can see or change it. A failed save answers HTTP 500 and keeps the old state.
    pub async fn write<F: FnOnce(&mut State) -> (ApiResponse, bool)>(&self, f: F) -> ApiResponse {
        let mut guard = self.state.lock().await;
        let mut next = guard.clone();
        let (resp, changed) = f(&mut next);
        if changed {
            next.revision += 1;
            if let Err(e) = self.store.save(&next) {
                tracing::error!("saving state failed: {e}");
                return ApiResponse::unexpected();
            }
            *guard = next;
        }
        resp
    }
}
