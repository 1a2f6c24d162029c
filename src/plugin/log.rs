//! Logging in the JSON-lines form Terraform parses from a plugin's stderr.
//!
//! go-plugin reads each stderr line of the provider and, when it is a JSON object with `@level`, `@message`
//! and (optionally) `@timestamp` in exactly Go's `2006-01-02T15:04:05.000000Z07:00` layout, re-logs it at that
//! level with the other keys as fields. `tracing-subscriber`'s stock JSON has none of those keys (everything
//! would show up as DEBUG), hence this small layer.
//!
//! The level comes from `TF_LOG_PROVIDER_HOMELAB`, else `TF_LOG_PROVIDER`, else `TF_LOG` (Terraform's own
//! convention); unset means off. Other crates (tonic, h2, hyper, rustls) are capped at WARN so `TF_LOG=trace`
//! shows our events, not HTTP/2 frames.
//!
//! Secrets: this layer writes whatever fields an event carries, so the rule is enforced at the call sites —
//! the framework logs type names, attribute paths and ids, never attribute values.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Mutex;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

/// Reads the provider log level from the environment (first set variable wins).
///
/// Accepted values follow Terraform: TRACE, DEBUG, INFO, WARN, ERROR, JSON (= TRACE), OFF. Like Terraform,
/// an unrecognised non-empty value means TRACE.
/// `provider` is the provider's name: `TF_LOG_PROVIDER_<NAME>` is read first.
pub fn level_from_env(get: impl Fn(&str) -> Option<String>, provider: &str) -> LevelFilter {
    let own = format!("TF_LOG_PROVIDER_{}", provider.to_ascii_uppercase());
    let raw = [own.as_str(), "TF_LOG_PROVIDER", "TF_LOG"]
        .iter()
        .find_map(|k| get(k).filter(|v| !v.trim().is_empty()));
    match raw.map(|v| v.trim().to_ascii_uppercase()).as_deref() {
        None | Some("OFF") => LevelFilter::OFF,
        Some("ERROR") => LevelFilter::ERROR,
        Some("WARN") => LevelFilter::WARN,
        Some("INFO") => LevelFilter::INFO,
        Some("DEBUG") => LevelFilter::DEBUG,
        Some(_) => LevelFilter::TRACE,
    }
}

/// Installs the stderr JSON logger as the global subscriber. Safe to call more than once. `module` is the
/// `@module` of every line (`provider.terraform-provider-<name>`).
pub fn init(level: LevelFilter, module: &str) {
    if level == LevelFilter::OFF {
        return;
    }
    let ours = env!("CARGO_CRATE_NAME");
    let filter = Targets::new()
        .with_default(level.min(LevelFilter::WARN))
        .with_target(ours, level);
    let _ = tracing_subscriber::registry()
        .with(HclogLayer::new(Box::new(std::io::stderr()), module).with_filter(filter))
        .try_init();
}

/// Formats a timestamp in Go's `2006-01-02T15:04:05.000000Z07:00` layout (UTC, so the zone is `Z`).
pub fn format_timestamp(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "trace",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        Level::ERROR => "error",
    }
}

/// The layer: one JSON object per event, span fields included (innermost wins).
pub struct HclogLayer {
    out: Mutex<Box<dyn std::io::Write + Send>>,
    module: String,
}

impl HclogLayer {
    /// A layer writing to `out` (stderr in production, a buffer in tests), naming `module` on every line.
    pub fn new(out: Box<dyn std::io::Write + Send>, module: &str) -> Self {
        Self {
            out: Mutex::new(out),
            module: module.to_string(),
        }
    }
}

/// Fields recorded on a span, kept in its extensions.
struct SpanFields(Map<String, Value>);

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for JsonVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut s = String::new();
        let _ = write!(s, "{value:?}");
        self.0.insert(field.name().to_string(), Value::String(s));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_string(), Value::String(value.to_string()));
    }
}

impl<S> Layer<S> for HclogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = Map::new();
        attrs.record(&mut JsonVisitor(&mut fields));
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanFields(fields));
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            let mut ext = span.extensions_mut();
            if let Some(SpanFields(fields)) = ext.get_mut::<SpanFields>() {
                values.record(&mut JsonVisitor(fields));
            }
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Map::new();
        if let Some(scope) = ctx.event_scope(event) {
            for span in scope.from_root() {
                if let Some(SpanFields(f)) = span.extensions().get::<SpanFields>() {
                    fields.extend(f.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
        }
        event.record(&mut JsonVisitor(&mut fields));
        let message = match fields.remove("message") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert("@level".into(), level_name(meta.level()).into());
        line.insert("@message".into(), message.into());
        line.insert(
            "@timestamp".into(),
            format_timestamp(time::OffsetDateTime::now_utc()).into(),
        );
        line.insert("@module".into(), self.module.clone().into());
        if meta.target() != env!("CARGO_CRATE_NAME") {
            line.insert("target".into(), meta.target().into());
        }
        for (k, v) in fields {
            // Never let a field shadow the keys Terraform relies on.
            if !k.starts_with('@') {
                line.insert(k, v);
            }
        }
        let mut text = Value::Object(line).to_string();
        text.push('\n');
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn level_precedence_and_values() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(level_from_env(get(&[]), "homelab"), LevelFilter::OFF);
        assert_eq!(
            level_from_env(get(&[("TF_LOG", "info")]), "homelab"),
            LevelFilter::INFO
        );
        assert_eq!(
            level_from_env(
                get(&[("TF_LOG", "info"), ("TF_LOG_PROVIDER", "ERROR")]),
                "homelab"
            ),
            LevelFilter::ERROR
        );
        assert_eq!(
            level_from_env(
                get(&[
                    ("TF_LOG", "info"),
                    ("TF_LOG_PROVIDER", "ERROR"),
                    ("TF_LOG_PROVIDER_HOMELAB", "debug")
                ]),
                "homelab"
            ),
            LevelFilter::DEBUG
        );
        assert_eq!(
            level_from_env(get(&[("TF_LOG", "JSON")]), "homelab"),
            LevelFilter::TRACE
        );
        assert_eq!(
            level_from_env(get(&[("TF_LOG", "off")]), "homelab"),
            LevelFilter::OFF
        );
        assert_eq!(
            level_from_env(get(&[("TF_LOG", "WARN")]), "homelab"),
            LevelFilter::WARN
        );
        assert_eq!(
            level_from_env(get(&[("TF_LOG", "bogus")]), "homelab"),
            LevelFilter::TRACE
        );
    }

    #[test]
    fn timestamp_layout_matches_go() {
        let t = time::macros::datetime!(2026-01-02 03:04:05.123456789 UTC);
        assert_eq!(format_timestamp(t), "2026-01-02T03:04:05.123456Z");
        let t = time::macros::datetime!(2026-01-02 03:04:05 +02:00);
        assert_eq!(format_timestamp(t), "2026-01-02T01:04:05.000000Z");
    }

    #[test]
    fn lines_are_hclog_json() {
        let buf = Buf::default();
        let sub = tracing_subscriber::registry().with(HclogLayer::new(
            Box::new(buf.clone()),
            "provider.terraform-provider-x",
        ));
        tracing::subscriber::with_default(sub, || {
            let span = tracing::info_span!("rpc", tf_rpc = "PlanResourceChange");
            let _g = span.enter();
            tracing::warn!(
                tf_resource_type = "homelab_x",
                count = 3,
                "planned {}",
                "thing"
            );
            tracing::trace!(ok = true, "second");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        let v: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["@level"], "warn");
        assert_eq!(v["@message"], "planned thing");
        assert_eq!(v["@module"], "provider.terraform-provider-x");
        assert_eq!(v["tf_rpc"], "PlanResourceChange");
        assert_eq!(v["tf_resource_type"], "homelab_x");
        assert_eq!(v["count"], 3);
        let ts = v["@timestamp"].as_str().unwrap();
        assert_eq!(ts.len(), "2006-01-02T15:04:05.000000Z".len(), "{ts}");
        assert!(ts.ends_with('Z') && ts.as_bytes()[19] == b'.', "{ts}");
        let v2: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(v2["@level"], "trace");
        assert_eq!(v2["ok"], true);
    }
}
