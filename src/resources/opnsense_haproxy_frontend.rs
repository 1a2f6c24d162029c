//! `homelab_opnsense_haproxy_frontend`: an os-haproxy public service (frontend).
//!
//! OPNsense's default mode is `http`; here `mode` is required so a TCP service (the k3s API) is never silently
//! HTTP. A frontend whose mode does not fit its default backend is refused: at apply for certain, and with a
//! warning at plan when the backend already exists with the other mode (it may still change in the same plan).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::opnsense_common::*;
use super::opnsense_object::*;
use crate::framework::*;
use crate::opnsense::haproxy::{
    Backend, BackendMode, ConnectionBehaviour, Frontend, FrontendMode, Kind,
};
use crate::opnsense::wire::WireEnum;
use crate::opnsense::Client;

pub const TYPE: &str = "homelab_opnsense_haproxy_frontend";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FrontendModel {
    pub id: Tf<String>,
    pub name: Tf<String>,
    pub description: Tf<String>,
    pub enabled: Tf<bool>,
    pub bind: StrSet,
    pub bind_options: Tf<String>,
    pub mode: Tf<String>,
    pub default_backend: Tf<String>,
    pub forward_for: Tf<bool>,
    pub connection_behaviour: Tf<String>,
    pub prometheus_enabled: Tf<bool>,
    pub prometheus_path: Tf<String>,
    pub max_connections: Tf<i64>,
    pub timeout_client: Tf<String>,
    pub log_dont_log_null: Tf<bool>,
    pub log_dont_log_normal: Tf<bool>,
    pub log_separate_errors: Tf<bool>,
    pub log_detailed: Tf<bool>,
    pub log_socket_stats: Tf<bool>,
}

fn flag(t: &Tf<bool>) -> bool {
    t.known().copied().unwrap_or(false)
}

/// Whether a frontend mode can use a backend mode.
pub fn modes_fit(fe: FrontendMode, be: BackendMode) -> bool {
    matches!(
        (fe, be),
        (FrontendMode::Http, BackendMode::Http)
            | (FrontendMode::Tcp | FrontendMode::Ssl, BackendMode::Tcp)
    )
}

fn mismatch(fe: FrontendMode, be: &Backend) -> Diagnostic {
    Diagnostic::error(
        "Frontend and backend modes do not fit",
        format!(
            "This frontend has mode {:?} but its default backend {:?} has mode {:?}. `http` frontends need `http` \
             backends; `tcp` and `ssl` frontends need `tcp` backends.",
            fe.as_wire(),
            be.name,
            be.mode.as_wire()
        ),
    )
    .at(attr("mode"))
}

pub struct Spec;

#[async_trait]
impl ObjectSpec for Spec {
    type Family = HaproxyFamily;
    type Obj = Frontend;
    type Model = FrontendModel;
    const TYPE: &'static str = TYPE;
    const WHAT: &'static str = "HAProxy frontend";
    const NOUN: &'static str = "frontend";

    fn schema() -> Schema {
        schema()
    }

    fn id(m: &FrontendModel) -> &Tf<String> {
        &m.id
    }
    fn set_id(m: &mut FrontendModel, id: String) {
        m.id = Tf::Known(id);
    }
    fn name(m: &FrontendModel) -> Option<&Tf<String>> {
        Some(&m.name)
    }

    fn to_obj(m: &FrontendModel) -> Result<Frontend, Diagnostics> {
        let default_backend = m
            .default_backend
            .known()
            .map(|s| parse_uuid(s, "default_backend"))
            .transpose()?;
        Ok(Frontend {
            name: m.name.known().cloned().unwrap_or_default(),
            description: opt_str(&m.description),
            enabled: m.enabled.known().copied().unwrap_or(true),
            bind: set_known(&m.bind).unwrap_or_default(),
            bind_options: opt_str(&m.bind_options),
            mode: m
                .mode
                .known()
                .and_then(|s| FrontendMode::from_wire(s))
                .unwrap_or(FrontendMode::Tcp),
            default_backend,
            forward_for: flag(&m.forward_for),
            connection_behaviour: m
                .connection_behaviour
                .known()
                .and_then(|s| ConnectionBehaviour::from_wire(s))
                .unwrap_or(ConnectionBehaviour::HttpKeepAlive),
            prometheus_enabled: flag(&m.prometheus_enabled),
            prometheus_path: m
                .prometheus_path
                .known()
                .cloned()
                .unwrap_or_else(|| "/metrics".into()),
            max_connections: opt_num(&m.max_connections),
            timeout_client: opt_str(&m.timeout_client),
            logging_dont_log_null: flag(&m.log_dont_log_null),
            logging_dont_log_normal: flag(&m.log_dont_log_normal),
            logging_log_separate_errors: flag(&m.log_separate_errors),
            logging_detailed_log: flag(&m.log_detailed),
            logging_socket_stats: flag(&m.log_socket_stats),
        })
    }

    fn from_obj(uuid: Uuid, o: &Frontend, prior: Option<&FrontendModel>) -> FrontendModel {
        FrontendModel {
            id: Tf::Known(uuid.to_string()),
            name: Tf::Known(o.name.clone()),
            description: tf_opt(o.description.clone()),
            enabled: Tf::Known(o.enabled),
            bind: keep_set_spelling(prior.map(|p| &p.bind), o.bind.clone()),
            bind_options: tf_opt(o.bind_options.clone()),
            mode: Tf::Known(o.mode.as_wire().to_string()),
            default_backend: tf_opt(o.default_backend.map(|u| u.to_string())),
            forward_for: Tf::Known(o.forward_for),
            connection_behaviour: Tf::Known(o.connection_behaviour.as_wire().to_string()),
            prometheus_enabled: Tf::Known(o.prometheus_enabled),
            prometheus_path: Tf::Known(o.prometheus_path.clone()),
            max_connections: tf_num(o.max_connections),
            timeout_client: tf_opt(o.timeout_client.clone()),
            log_dont_log_null: Tf::Known(o.logging_dont_log_null),
            log_dont_log_normal: Tf::Known(o.logging_dont_log_normal),
            log_separate_errors: Tf::Known(o.logging_log_separate_errors),
            log_detailed: Tf::Known(o.logging_detailed_log),
            log_socket_stats: Tf::Known(o.logging_socket_stats),
        }
    }

    fn validate(config: &FrontendModel, diags: &mut Diagnostics) {
        if flag(&config.prometheus_enabled) && config.mode.known().is_some_and(|m| m != "http") {
            diags.push(
                Diagnostic::error(
                    "The Prometheus exporter needs mode = \"http\"",
                    "OPNsense only renders the exporter on http frontends; use homelab_opnsense_haproxy_settings' \
                     exporter for a dedicated listener.",
                )
                .at(attr("prometheus_enabled")),
            );
        }
    }
    async fn plan_check(
        ctx: &Context,
        c: &Client,
        plan: &Plan<FrontendModel>,
    ) -> Result<(), Diagnostics> {
        let planned = &plan.planned;
        let Ok(model) = c.haproxy().model().await else {
            return Ok(());
        };
        warn_shared_binds(ctx, &model, plan);
        let (Some(b), Some(mode)) = (
            planned
                .default_backend
                .known()
                .and_then(|s| Uuid::parse_str(s).ok()),
            planned
                .mode
                .known()
                .and_then(|s| FrontendMode::from_wire(s)),
        ) else {
            return Ok(());
        };
        if let Ok(Some(be)) = model.get::<Backend>(b) {
            if !modes_fit(mode, be.mode) && model.contains(Kind::Backend, b) {
                let d = mismatch(mode, &be);
                ctx.warn(
                    d.summary.clone(),
                    format!(
                        "{} Unless the backend's mode changes in this plan, apply will fail.",
                        d.detail
                    ),
                );
            }
        }
        Ok(())
    }

    async fn check(c: &Client, o: &Frontend) -> Result<(), Diagnostics> {
        let Some(b) = o.default_backend else {
            return Ok(());
        };
        let model = c
            .haproxy()
            .model()
            .await
            .map_err(|e| diags(e, "Could not read the HAProxy frontends"))?;
        match model.get::<Backend>(b) {
            Ok(Some(be)) if !modes_fit(o.mode, be.mode) => Err(mismatch(o.mode, &be).into()),
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(Diagnostic::error(
                "Unknown HAProxy backend",
                format!("No HAProxy backend has the id {b}; reference a `homelab_opnsense_haproxy_backend`'s id."),
            )
            .at(attr("default_backend"))
            .into()),
            Err(e) => Err(diags(e, "Could not read the default backend")),
        }
    }
}

/// Binds planned by the frontends of this plan, by frontend name (the plan's provider process sees every
/// frontend's plan, so two new frontends on one address are caught too, whichever plans second).
#[derive(Default)]
struct PlannedBinds(std::sync::Mutex<std::collections::BTreeMap<String, BTreeSet<String>>>);

/// Whether two `host:port` binds take the same socket: the same text (OPNsense lower-cases them), or the same port
/// with one side on every address (`0.0.0.0`, `*`, `::`, or no host).
fn binds_collide(a: &str, b: &str) -> bool {
    let (a, b) = (a.to_ascii_lowercase(), b.to_ascii_lowercase());
    if a == b {
        return true;
    }
    let split = |s: &str| -> Option<(String, String)> {
        let (h, p) = s.rsplit_once(':')?;
        Some((h.trim_matches(['[', ']']).to_string(), p.to_string()))
    };
    let wild = |h: &str| matches!(h, "" | "*" | "0.0.0.0" | "::");
    match (split(&a), split(&b)) {
        (Some((ha, pa)), Some((hb, pb))) => pa == pb && (wild(&ha) || wild(&hb)),
        _ => false,
    }
}

/// Two frontends on one address:port: haproxy starts (it binds with SO_REUSEPORT), and the kernel then spreads the
/// connections over both, so half the clients reach the wrong service. OPNsense does not refuse it; warn at plan,
/// on `bind`, naming the other frontend.
fn warn_shared_binds(
    ctx: &Context,
    model: &crate::opnsense::haproxy::Model,
    plan: &Plan<FrontendModel>,
) {
    let planned = &plan.planned;
    let (Some(binds), Some(name)) = (set_known(&planned.bind), planned.name.known()) else {
        return;
    };
    // Only a frontend whose binds are new or change is warned about: one that stays as it is was warned about
    // when it changed (its binds are still recorded below, so a newcomer sees them).
    let changes = plan
        .prior
        .as_ref()
        .is_none_or(|p| set_known(&p.bind) != Some(binds.clone()))
        && planned.enabled.known() != Some(&false);
    let own = plan
        .prior
        .as_ref()
        .and_then(|p| p.id.known())
        .and_then(|s| Uuid::parse_str(s).ok());
    let mut others: Vec<(String, String)> = Vec::new();
    for (uuid, fe) in model.list::<Frontend>() {
        let Ok(fe) = fe else { continue };
        if Some(uuid) == own || fe.name == *name || !fe.enabled {
            continue;
        }
        for b in &binds {
            if let Some(theirs) = fe.bind.iter().find(|x| binds_collide(b, x)) {
                others.push((
                    format!("{:?} (on the firewall, id {uuid})", fe.name),
                    theirs.clone(),
                ));
            }
        }
    }
    if let Ok(pd) = crate::provider::ProviderData::of(ctx) {
        if let Ok(planned_binds) = pd.cached::<PlannedBinds>(|_| Ok(PlannedBinds::default())) {
            if let Ok(mut m) = planned_binds.0.lock() {
                for (other, theirs) in m.iter().filter(|(n, _)| *n != name) {
                    for b in &binds {
                        if let Some(t) = theirs.iter().find(|x| binds_collide(b, x)) {
                            if !others
                                .iter()
                                .any(|(o, _)| o.starts_with(&format!("{other:?}")))
                            {
                                others.push((format!("{other:?} (in this plan)"), t.clone()));
                            }
                        }
                    }
                }
                if planned.enabled.known() != Some(&false) {
                    m.insert(name.clone(), binds.iter().cloned().collect());
                }
            }
        }
    }
    if !changes || others.is_empty() {
        return;
    }
    let list = others
        .iter()
        .map(|(o, b)| format!("frontend {o} with {b}"))
        .collect::<Vec<_>>()
        .join("; ");
    ctx.warn_at(
        attr("bind"),
        "Another HAProxy frontend binds the same address",
        format!(
            "Frontend {name:?} takes the same socket as {list}. haproxy accepts both, and the kernel then spreads \
             connections over the two, so some clients reach the wrong service. Give each frontend its own \
             address:port."
        ),
    );
}

pub fn schema() -> Schema {
    Schema::new(
        "A HAProxy public service (frontend) on OPNsense: where HAProxy listens and which backend gets the \
         traffic. A frontend on a virtual IP needs that VIP applied first (reference `homelab_opnsense_vip`).",
    )
    .attribute(id_attribute("frontend"))
    .attribute(
        Attribute::string("name")
            .required()
            .validate(name_validator())
            .description("Frontend name in haproxy.conf (`frontend <name>`). Unique among frontends."),
    )
    .attribute(
        Attribute::string("description")
            .optional()
            .validate(description_validator())
            .description("Free-text description."),
    )
    .attribute(Attribute::bool("enabled").default_bool(true).description("Whether the frontend is rendered."))
    .attribute(
        Attribute::set("bind", Type::String)
            .required()
            .validate(listen_set_validator())
            .description("Listen addresses as `host:port`, e.g. `[\"10.0.3.100:6443\"]` or `[\"*:443\"]`."),
    )
    .attribute(
        Attribute::string("bind_options")
            .optional()
            .description("Extra options appended to every `bind` line."),
    )
    .attribute(
        Attribute::string("mode")
            .required()
            .validate(Validator::one_of(&["http", "ssl", "tcp"]))
            .description("`tcp` (layer 4), `http` (layer 7, with SSL offloading if configured) or `ssl` (TLS \
                          passthrough in TCP mode)."),
    )
    .attribute(
        Attribute::string("default_backend")
            .optional()
            .validate(uuid_validator())
            .description("Id of the `homelab_opnsense_haproxy_backend` that gets the traffic."),
    )
    .attribute(
        Attribute::bool("forward_for")
            .default_bool(false)
            .description("Add `X-Forwarded-For` (http mode)."),
    )
    .attribute(
        Attribute::string("connection_behaviour")
            .default_string("http-keep-alive")
            .validate(Validator::one_of(&["http-keep-alive", "httpclose", "http-server-close"]))
            .description("HTTP connection mode (http mode only)."),
    )
    .attribute(
        Attribute::bool("prometheus_enabled")
            .default_bool(false)
            .description("Serve HAProxy's Prometheus exporter on this frontend at `prometheus_path` (http mode \
                          only; see also `homelab_opnsense_haproxy_settings`)."),
    )
    .attribute(
        Attribute::string("prometheus_path")
            .default_string("/metrics")
            .description("Path of the Prometheus exporter."),
    )
    .attribute(
        Attribute::number("max_connections")
            .optional()
            .validate(Validator::int_between(0, 10_000_000))
            .description("Maximum concurrent connections (`maxconn`)."),
    )
    .attribute(
        Attribute::string("timeout_client")
            .optional()
            .validate(time_validator())
            .description("`timeout client`, e.g. `30s` (long-lived kubectl watches may want more)."),
    )
    .attribute(Attribute::bool("log_dont_log_null").default_bool(false).description("`option dontlognull`."))
    .attribute(Attribute::bool("log_dont_log_normal").default_bool(false).description("`option dontlog-normal`."))
    .attribute(Attribute::bool("log_separate_errors").default_bool(false).description("`option log-separate-errors`."))
    .attribute(Attribute::bool("log_detailed").default_bool(false).description("Detailed logging (`option tcplog` / `option httplog`)."))
    .attribute(Attribute::bool("log_socket_stats").default_bool(false).description("`option socket-stats`."))
}

pub fn register(r: &mut Registry) {
    register_object::<Spec>(r);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;

    #[test]
    fn round_trip_keeps_user_spelling_of_binds() {
        let m = FrontendModel {
            id: Tf::Known(Uuid::nil().to_string()),
            name: Tf::Known("k3s-controlplane".into()),
            enabled: Tf::Known(true),
            bind: set_of(["FW.lan:6443".to_string()]),
            mode: Tf::Known("tcp".into()),
            default_backend: Tf::Known(Uuid::new_v4().to_string()),
            forward_for: Tf::Known(false),
            connection_behaviour: Tf::Known("http-keep-alive".into()),
            prometheus_enabled: Tf::Known(false),
            prometheus_path: Tf::Known("/metrics".into()),
            log_dont_log_null: Tf::Known(false),
            log_dont_log_normal: Tf::Known(false),
            log_separate_errors: Tf::Known(false),
            log_detailed: Tf::Known(true),
            log_socket_stats: Tf::Known(false),
            ..Default::default()
        };
        let mut o = Spec::to_obj(&m).unwrap();
        assert_eq!(Spec::from_obj(Uuid::nil(), &o, Some(&m)), m);
        // OPNsense lower-cases binds: the user's spelling stays.
        o.bind = ["fw.lan:6443".to_string()].into_iter().collect();
        assert_eq!(Spec::from_obj(Uuid::nil(), &o, Some(&m)).bind, m.bind);
        let v = codec::to_value(&m, &schema().value_type()).unwrap();
        assert_eq!(codec::from_value::<FrontendModel>(&v).unwrap(), m);
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
    }

    #[test]
    fn binds_that_take_the_same_socket() {
        assert!(binds_collide("10.0.3.100:6443", "10.0.3.100:6443"));
        assert!(binds_collide("FW.lan:6443", "fw.lan:6443"));
        assert!(binds_collide("0.0.0.0:6443", "10.0.3.100:6443"));
        assert!(binds_collide("10.0.3.100:6443", ":6443"));
        assert!(binds_collide("[::]:6443", "10.0.3.100:6443"));
        assert!(!binds_collide("10.0.3.100:6443", "10.0.3.101:6443"));
        assert!(!binds_collide("0.0.0.0:6443", "0.0.0.0:6444"));
    }

    #[test]
    fn mode_rules() {
        assert!(modes_fit(FrontendMode::Tcp, BackendMode::Tcp));
        assert!(modes_fit(FrontendMode::Ssl, BackendMode::Tcp));
        assert!(modes_fit(FrontendMode::Http, BackendMode::Http));
        assert!(!modes_fit(FrontendMode::Http, BackendMode::Tcp));
        assert!(!modes_fit(FrontendMode::Tcp, BackendMode::Http));
    }
}
