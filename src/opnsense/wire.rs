//! OPNsense's string forms, kept at the client boundary.
//!
//! OPNsense models return every value as a string: booleans `"0"`/`"1"`, integers `"8080"`, unset values `""`,
//! option and relation fields as maps `{key: {"value": label, "selected": 0|1}}` (with a `""`/"None" entry for
//! optional single selects, `[]` for an empty multi field), CSV fields as maps of their items, and search rows as raw
//! comma-joined strings. The helpers here read all of those shapes (so the same decoder works on `get*`, the whole
//! model and search rows) into typed values, and write typed values back as the strings `set*` expects. Nothing
//! outside `src/opnsense/` ever sees these forms.

use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::str::FromStr;
use uuid::Uuid;

use super::error::{DecodeError, Error, FieldError};

/// One OPNsense object as JSON (a `get*` payload inside its wrapper, a model array item, or a search row).
pub type Obj = Map<String, Value>;

type DResult<T> = std::result::Result<T, DecodeError>;

/// A scalar field as a string (`""` when missing or null; numbers are rendered).
pub fn text(o: &Obj, f: &str) -> String {
    match o.get(f) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Bool(b)) => if *b { "1" } else { "0" }.to_string(),
        // An option map in a scalar position (e.g. a field that became a select in a newer version).
        Some(v @ Value::Object(_)) => selected_keys(v).join(","),
        _ => String::new(),
    }
}

/// A scalar field where `""` means unset.
pub fn opt_text(o: &Obj, f: &str) -> Option<String> {
    let s = text(o, f);
    (!s.is_empty()).then_some(s)
}

/// A BooleanField: `"1"` → true, `"0"`/`""`/missing → false.
pub fn boolean(o: &Obj, f: &str) -> DResult<bool> {
    match text(o, f).as_str() {
        "1" | "true" => Ok(true),
        "0" | "" | "false" => Ok(false),
        other => Err(DecodeError::new(
            f,
            format!("expected \"0\" or \"1\", got {other:?}"),
        )),
    }
}

/// An IntegerField where `""` means unset.
pub fn opt_int<T: FromStr>(o: &Obj, f: &str) -> DResult<Option<T>> {
    let s = text(o, f);
    if s.is_empty() {
        return Ok(None);
    }
    s.trim()
        .parse::<T>()
        .map(Some)
        .map_err(|_| DecodeError::new(f, format!("expected an integer, got {s:?}")))
}

/// The selected keys of an option/relation/CSV map, or the items of a raw comma-joined string (search rows).
fn selected_keys(v: &Value) -> Vec<String> {
    match v {
        Value::Object(m) => m
            .iter()
            .filter(|(k, item)| {
                !k.is_empty()
                    && match item.get("selected") {
                        Some(Value::Number(n)) => n.as_i64() == Some(1),
                        Some(Value::Bool(b)) => *b,
                        Some(Value::String(s)) => s == "1",
                        _ => false,
                    }
            })
            .map(|(k, _)| k.clone())
            .collect(),
        Value::String(s) => s
            .split(',')
            .filter(|x| !x.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// All selected keys of a multi field (`[]`, `""` and missing are empty).
pub fn selected_all(o: &Obj, f: &str) -> Vec<String> {
    o.get(f).map(selected_keys).unwrap_or_default()
}

/// The selected key of a single select (`None` for the `""` entry, nothing selected, or missing).
pub fn selected(o: &Obj, f: &str) -> Option<String> {
    selected_all(o, f).into_iter().next()
}

/// A multi relation as a set of UUIDs.
pub fn uuid_set(o: &Obj, f: &str) -> DResult<BTreeSet<Uuid>> {
    selected_all(o, f)
        .iter()
        .map(|s| Uuid::parse_str(s).map_err(|_| DecodeError::new(f, format!("not a UUID: {s:?}"))))
        .collect()
}

/// A single relation as an optional UUID.
pub fn opt_uuid(o: &Obj, f: &str) -> DResult<Option<Uuid>> {
    selected(o, f)
        .map(|s| Uuid::parse_str(&s).map_err(|_| DecodeError::new(f, format!("not a UUID: {s:?}"))))
        .transpose()
}

/// A single select decoded into a typed enum (`None` when unset).
pub fn opt_enum<E: WireEnum>(o: &Obj, f: &str) -> DResult<Option<E>> {
    selected(o, f)
        .map(|s| {
            E::from_wire(&s).ok_or_else(|| DecodeError::new(f, format!("unknown option {s:?}")))
        })
        .transpose()
}

/// A required single select; falls back to `default` when OPNsense shows nothing selected.
pub fn enum_or<E: WireEnum>(o: &Obj, f: &str, default: E) -> DResult<E> {
    Ok(opt_enum(o, f)?.unwrap_or(default))
}

// ---- encoding ----

pub fn enc_bool(b: bool) -> Value {
    Value::String(if b { "1" } else { "0" }.into())
}

pub fn enc_text(s: &str) -> Value {
    Value::String(s.to_string())
}

pub fn enc_opt_text(s: &Option<String>) -> Value {
    Value::String(s.clone().unwrap_or_default())
}

pub fn enc_opt<T: ToString>(v: &Option<T>) -> Value {
    Value::String(v.as_ref().map(|x| x.to_string()).unwrap_or_default())
}

pub fn enc_list<I, T>(items: I) -> Value
where
    I: IntoIterator<Item = T>,
    T: ToString,
{
    Value::String(
        items
            .into_iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(","),
    )
}

pub fn enc_enum<E: WireEnum>(e: &E) -> Value {
    Value::String(e.as_wire().to_string())
}

pub fn enc_opt_enum<E: WireEnum>(e: &Option<E>) -> Value {
    Value::String(e.as_ref().map(|x| x.as_wire()).unwrap_or("").to_string())
}

/// Convert a `get*`-shaped object (option maps, CSV maps, `[]`) into the flat string form `set*` accepts, so an
/// object can be written back exactly as it was read (used to revert a change that failed configtest).
pub fn flatten_for_set(o: &Obj) -> Obj {
    let mut out = Obj::new();
    for (k, v) in o {
        if k.starts_with('%') || k == "id" {
            continue;
        }
        let flat = match v {
            Value::Object(m) if m.values().all(|x| x.get("selected").is_some()) => {
                Value::String(selected_keys(v).join(","))
            }
            // Nested containers (not option maps) are left out: they are not fields of a flat item.
            Value::Object(_) => continue,
            Value::Array(a) if a.is_empty() => Value::String(String::new()),
            Value::Array(_) => continue,
            Value::Null => continue,
            other => Value::String(match other {
                Value::String(s) => s.clone(),
                x => x.to_string(),
            }),
        };
        out.insert(k.clone(), flat);
    }
    out
}

/// A typed enum with OPNsense option keys.
pub trait WireEnum: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn as_wire(&self) -> &'static str;
    fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|x| x.as_wire() == s)
    }
    /// All option keys, for plan-time validation messages.
    fn wire_values() -> Vec<&'static str> {
        Self::ALL.iter().map(|x| x.as_wire()).collect()
    }
}

/// Declares an enum whose variants map to OPNsense option keys.
macro_rules! wire_enum {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $var:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $var),+ }
        impl $crate::opnsense::wire::WireEnum for $name {
            const ALL: &'static [Self] = &[$($name::$var),+];
            fn as_wire(&self) -> &'static str { match self { $($name::$var => $s),+ } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::opnsense::wire::WireEnum::as_wire(self))
            }
        }
        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <Self as $crate::opnsense::wire::WireEnum>::from_wire(s).ok_or_else(|| {
                    format!("{s:?} is not one of {}",
                        <Self as $crate::opnsense::wire::WireEnum>::wire_values().join(", "))
                })
            }
        }
    };
}
pub(crate) use wire_enum;

// ---- results ----

/// Outcome of an `add*`/`set*`/`set` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub uuid: Option<Uuid>,
}

/// Interpret the body of a save call: `saved` → Ok, `failed` + validations → [`Error::Validation`] with keys mapped
/// to attributes by `attribute_of` (given the key without its wrapper prefix), bare `failed` → [`Error::Failed`].
pub fn interpret_save(
    path: &str,
    object: &'static str,
    body: &Value,
    attribute_of: &dyn Fn(&str) -> Option<&'static str>,
) -> Result<Saved, Error> {
    let result = body.get("result").and_then(Value::as_str);
    match result {
        Some("saved") => {
            let uuid = body
                .get("uuid")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok());
            Ok(Saved { uuid })
        }
        Some("failed") => match body.get("validations").and_then(Value::as_object) {
            Some(v) if !v.is_empty() => Err(Error::Validation {
                object,
                fields: validation_fields(v, attribute_of),
            }),
            _ => Err(Error::Failed {
                path: path.to_string(),
            }),
        },
        _ => Err(Error::Decode {
            path: path.to_string(),
            detail: format!("expected a result of saved or failed, got {}", short(body)),
        }),
    }
}

/// Turn OPNsense's validation map into field errors (sorted by key for stable diagnostics).
pub fn validation_fields(
    v: &Obj,
    attribute_of: &dyn Fn(&str) -> Option<&'static str>,
) -> Vec<FieldError> {
    let mut out: Vec<FieldError> = v
        .iter()
        .map(|(key, msg)| {
            let messages = match msg {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a
                    .iter()
                    .map(|m| {
                        m.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| m.to_string())
                    })
                    .collect(),
                other => vec![other.to_string()],
            };
            // `server.port` → `port`; `haproxy.general.stats.prometheus_bind` → `general.stats.prometheus_bind`.
            let field = key.split_once('.').map(|(_, rest)| rest).unwrap_or(key);
            FieldError {
                key: key.clone(),
                attribute: attribute_of(field),
                messages,
            }
        })
        .collect();
    out.sort_by(|a, b| a.key.cmp(&b.key));
    out
}

/// A short rendering of a JSON body for error messages.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(300).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

/// Unwrap `{wrapper: {…}}`; `[]` (OPNsense's "not found" for get) → `None`.
pub fn unwrap_object<'a>(
    path: &str,
    body: &'a Value,
    wrapper: &str,
) -> Result<Option<&'a Obj>, Error> {
    match body {
        Value::Array(a) if a.is_empty() => Ok(None),
        Value::Object(m) => match m.get(wrapper) {
            Some(Value::Object(inner)) => Ok(Some(inner)),
            Some(Value::Array(a)) if a.is_empty() => Ok(None),
            _ => Err(Error::Decode {
                path: path.to_string(),
                detail: format!("missing wrapper key {wrapper:?}"),
            }),
        },
        other => Err(Error::Decode {
            path: path.to_string(),
            detail: format!("expected an object, got {}", short(other)),
        }),
    }
}

/// The items of a model array (`{"server": {uuid: {…}}}` or `{"server": []}`), keyed by UUID.
pub fn array_items<'a>(container: Option<&'a Value>, item_key: &str) -> Vec<(Uuid, &'a Obj)> {
    let Some(Value::Object(c)) = container else {
        return Vec::new();
    };
    let Some(Value::Object(items)) = c.get(item_key) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|(k, v)| Some((Uuid::parse_str(k).ok()?, v.as_object()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Obj {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_every_shape() {
        let o = obj(json!({
            "enabled": "1", "ssl": "0", "port": "8080", "weight": "", "num": 7,
            "mode": {"": {"value":"None","selected":0}, "active": {"value":"active [default]","selected":1}},
            "none": {"": {"value":"None","selected":1}, "a": {"value":"A","selected":0}},
            "multi": {"b": {"value":"b","selected":1}, "a": {"value":"a","selected":0}, "c": {"value":"c","selected":1}},
            "empty_multi": [],
            "csv": {"": {"value":"","selected":1}},
            "raw": "x,y",
        }));
        assert!(boolean(&o, "enabled").unwrap());
        assert!(!boolean(&o, "ssl").unwrap());
        assert!(!boolean(&o, "missing").unwrap());
        assert_eq!(opt_int::<u16>(&o, "port").unwrap(), Some(8080));
        assert_eq!(opt_int::<u16>(&o, "weight").unwrap(), None);
        assert_eq!(opt_int::<u16>(&o, "num").unwrap(), Some(7));
        assert_eq!(selected(&o, "mode").as_deref(), Some("active"));
        assert_eq!(selected(&o, "none"), None);
        assert_eq!(selected_all(&o, "multi"), vec!["b", "c"]);
        assert!(selected_all(&o, "empty_multi").is_empty());
        assert!(selected_all(&o, "csv").is_empty());
        assert_eq!(selected_all(&o, "raw"), vec!["x", "y"]);
        assert_eq!(text(&o, "mode"), "active");
    }

    #[test]
    fn bad_values_name_the_field() {
        let o = obj(json!({"enabled": "yes", "port": "abc", "rel": "not-a-uuid"}));
        assert_eq!(boolean(&o, "enabled").unwrap_err().field, "enabled");
        assert_eq!(opt_int::<u16>(&o, "port").unwrap_err().field, "port");
        assert!(uuid_set(&o, "rel").is_err());
        assert_eq!(
            opt_int::<u16>(&obj(json!({"port": "70000"})), "port")
                .unwrap_err()
                .field,
            "port"
        );
    }

    #[test]
    fn flatten_turns_get_shape_into_set_shape() {
        let o = obj(json!({
            "id": "6b04e7958e97b3.51447181", "name": "web1", "%mode": "active [default]",
            "mode": {"": {"value":"None","selected":0}, "active": {"value":"active","selected":1}},
            "linkedServers": {"u2": {"value":"b","selected":1}, "u1": {"value":"a","selected":1}, "u3": {"value":"c","selected":0}},
            "sslCA": [],
            "bind": {"1.2.3.4:80": {"value":"1.2.3.4:80","selected":1}},
        }));
        let f = flatten_for_set(&o);
        assert_eq!(f.get("id"), None);
        assert_eq!(f.get("%mode"), None);
        assert_eq!(f["name"], "web1");
        assert_eq!(f["mode"], "active");
        let mut linked: Vec<&str> = f["linkedServers"].as_str().unwrap().split(',').collect();
        linked.sort();
        assert_eq!(linked, vec!["u1", "u2"]);
        assert_eq!(f["sslCA"], "");
        assert_eq!(f["bind"], "1.2.3.4:80");
    }

    #[test]
    fn save_results() {
        let attr = |f: &str| match f {
            "port" => Some("port"),
            "checkInterval" => Some("check_interval"),
            _ => None,
        };
        let ok = interpret_save(
            "p",
            "server",
            &json!({"result":"saved","uuid":"a45cdd6a-ce46-45b6-b181-989dd7e192b6"}),
            &attr,
        )
        .unwrap();
        assert_eq!(
            ok.uuid.unwrap().to_string(),
            "a45cdd6a-ce46-45b6-b181-989dd7e192b6"
        );
        let err = interpret_save(
            "p",
            "server",
            &json!({"result":"failed","validations":{"server.port":"Please specify a value between 1 and 65535.","server.weight":["Please specify a value between 0 and 256."],"server.checkInterval":"x"}}),
            &attr,
        )
        .unwrap_err();
        let Error::Validation { fields, .. } = &err else {
            panic!("{err:?}")
        };
        assert_eq!(fields.len(), 3);
        assert_eq!(fields[0].key, "server.checkInterval");
        assert_eq!(fields[0].attribute, Some("check_interval"));
        assert_eq!(fields[1].attribute, Some("port"));
        assert_eq!(fields[2].attribute, None);
        assert_eq!(
            fields[2].messages,
            vec!["Please specify a value between 0 and 256."]
        );
        assert!(err
            .to_string()
            .contains("port: Please specify a value between 1 and 65535."));
        assert!(matches!(
            interpret_save("p", "server", &json!({"result":"failed"}), &attr),
            Err(Error::Failed { .. })
        ));
        assert!(matches!(
            interpret_save("p", "server", &json!([]), &attr),
            Err(Error::Decode { .. })
        ));
    }

    #[test]
    fn unwrap_not_found_and_arrays() {
        assert!(unwrap_object("p", &json!([]), "server").unwrap().is_none());
        assert!(
            unwrap_object("p", &json!({"server": {"name": "a"}}), "server")
                .unwrap()
                .is_some()
        );
        assert!(unwrap_object("p", &json!({"backend": {}}), "server").is_err());
        let m =
            json!({"server": {"a45cdd6a-ce46-45b6-b181-989dd7e192b6": {"name": "a"}, "bad": {}}});
        assert_eq!(array_items(Some(&m), "server").len(), 1);
        assert!(array_items(Some(&json!({"server": []})), "server").is_empty());
    }

    wire_enum! {
        pub enum Demo { A => "a", B => "b-b" }
    }

    #[test]
    fn enums_round_trip() {
        assert_eq!(Demo::from_wire("b-b"), Some(Demo::B));
        assert_eq!("a".parse::<Demo>().unwrap(), Demo::A);
        assert!("c".parse::<Demo>().unwrap_err().contains("a, b-b"));
        let o = obj(
            json!({"x": {"a": {"value": "A", "selected": 0}, "b-b": {"value":"B","selected":1}}, "y": "zz"}),
        );
        assert_eq!(opt_enum::<Demo>(&o, "x").unwrap(), Some(Demo::B));
        assert!(opt_enum::<Demo>(&o, "y").is_err());
        assert_eq!(enum_or(&o, "missing", Demo::A).unwrap(), Demo::A);
    }
}
