//! Fault injection: the failures a client meets on a real network and a real, busy firewall.
//!
//! A provider must survive an HTTP 500, a slow answer, a connection that drops *after* the change was applied (the
//! reply is lost, so a retry must be idempotent: that is what the upsert on `setX` with a client-chosen UUID is
//! for), and a connection that drops *before* anything happened. Rules are switched at run time through the admin
//! endpoint (`/__emulator/faults`, see [`crate::server`]) or [`crate::EmulatorHandle`].
//!
//! A rule matches one endpoint (`haproxy/settings/addServer`, compared like OPNsense routes: case-insensitive,
//! underscores ignored), a prefix of one (`haproxy/settings`, `haproxy`), or every call (no endpoint), and fires
//! `times` times (absent = until cleared).
//!
//! [`FaultKind::Restart`] is carried out by the accept loop ([`crate::server::serve`]), told through
//! [`crate::app::App::restarts`].

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FaultKind {
    /// Answer HTTP 500 `{"errorMessage":"Unexpected error, check log for details"}` without doing anything.
    Status500,
    /// Wait this long before handling the call.
    Delay { ms: u64 },
    /// Close the connection without doing anything.
    DropBefore,
    /// Do the call (the change is saved), then close the connection without answering.
    DropAfter,
    /// The API restarts right after this call: the call is done (the change is saved) but its reply is lost, every
    /// open connection is cut and for `down_ms` nothing listens on the port (connections are refused), as when
    /// the web GUI/API service of a real box restarts (a firmware update, `configctl webgui restart`). The saved
    /// configuration and the running haproxy survive, as on the box.
    Restart { down_ms: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRule {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(flatten)]
    pub kind: FaultKind,
    #[serde(default)]
    pub times: Option<u32>,
}

impl FaultRule {
    pub fn new(endpoint: Option<&str>, kind: FaultKind) -> Self {
        FaultRule {
            endpoint: endpoint.map(str::to_string),
            kind,
            times: None,
        }
    }

    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }
}

/// Route segments normalised like OPNsense's router (lowercase, `_` removed), without the `/api/` prefix.
pub fn normalise_endpoint(path: &str) -> Vec<String> {
    let p = path.trim_start_matches('/');
    let p = p.strip_prefix("api/").unwrap_or(p);
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| s.to_ascii_lowercase().replace('_', ""))
        .collect()
}

#[derive(Debug, Default)]
pub struct Faults {
    rules: Mutex<Vec<FaultRule>>,
}

impl Faults {
    pub fn add(&self, rule: FaultRule) {
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(rule);
    }

    pub fn clear(&self) {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    pub fn list(&self) -> Vec<FaultRule> {
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The faults that fire for this request path (consuming one use of counted rules).
    pub fn take(&self, path: &str) -> Vec<FaultKind> {
        let route = normalise_endpoint(path);
        let route: Vec<&String> = route.iter().take(3).collect();
        let mut rules = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for r in rules.iter_mut() {
            let matches = match &r.endpoint {
                None => true,
                Some(e) => {
                    let want = normalise_endpoint(e);
                    !want.is_empty()
                        && want.len() <= route.len()
                        && want.iter().zip(route.iter()).all(|(a, b)| a == *b)
                }
            };
            if !matches || r.times == Some(0) {
                continue;
            }
            if let Some(t) = r.times.as_mut() {
                *t -= 1;
            }
            out.push(r.kind.clone());
        }
        rules.retain(|r| r.times != Some(0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_by_route_prefix_and_count_down() {
        let f = Faults::default();
        f.add(FaultRule::new(Some("haproxy/settings/add_server"), FaultKind::Status500).times(1));
        f.add(FaultRule::new(
            Some("/api/interfaces"),
            FaultKind::DropAfter,
        ));
        assert!(f.take("/api/haproxy/settings/getServer/x").is_empty());
        assert_eq!(
            f.take("/api/haproxy/settings/addServer"),
            vec![FaultKind::Status500]
        );
        assert!(f.take("/api/haproxy/settings/addServer").is_empty());
        assert_eq!(
            f.take("/api/interfaces/vip_settings/addItem"),
            vec![FaultKind::DropAfter]
        );
        let parsed: FaultRule =
            serde_json::from_str(r#"{"endpoint":"haproxy","kind":"delay","ms":5}"#).unwrap();
        assert_eq!(parsed.kind, FaultKind::Delay { ms: 5 });
    }
}
