//! The generic model engine: what OPNsense's `BaseModel`, field types and `ApiMutableModelControllerBase` do for
//! every model, driven by the field tables of [`crate::schema`].
//!
//! Why one engine instead of per-endpoint code: every quirk a client meets (strings everywhere, option maps with a
//! `""`/None entry, relation maps over all candidates, `%field` twins in search rows, "Option [] not in list.", the
//! one-element-array integer message, partial updates where `null` means unchanged) comes from these shared base
//! classes on the real box, so emulating them once keeps all endpoints consistent.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::natsort::natcasecmp;
use crate::schema::{mask_matches, FieldDef, FieldType, Section};
use crate::store::{Item, ModelData};

/// What field rendering and validation need to know about the rest of the box.
pub struct Ctx<'a> {
    /// The model the section belongs to (relation candidates).
    pub data: &'a ModelData,
    /// Interface keys and descriptions (`wan` → `WAN`), in config order.
    pub interfaces: &'a [(String, String)],
}

/// PHP's `uniqid('', true)`: 8 hex digits of seconds, 5 of microseconds, then a random `d.dddddddd`.
pub fn uniqid() -> String {
    use rand::Rng;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let mut rng = rand::thread_rng();
    format!(
        "{:08x}{:05x}{}.{:08}",
        now.as_secs(),
        now.subsec_micros(),
        rng.gen_range(0..10),
        rng.gen_range(0..100_000_000u32)
    )
}

/// True for the lowercase v4 UUIDs OPNsense accepts for upsert (`setX` on an unknown UUID creates the item).
pub fn is_lower_v4_uuid(s: &str) -> bool {
    static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    RE.get_or_init(|| {
        regex::Regex::new("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
            .expect("uuid regex")
    })
    .is_match(s)
}

pub fn new_uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A fresh record with every default filled in (UniqueId fields get a new uniqid).
pub fn defaults(section: &Section) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for f in &section.fields {
        if f.volatile {
            continue;
        }
        let v = if f.ty == FieldType::UniqueId {
            uniqid()
        } else {
            f.default.clone()
        };
        m.insert(f.name.clone(), v);
    }
    m
}

fn split_multi(v: &str) -> Vec<&str> {
    if v.is_empty() {
        Vec::new()
    } else {
        v.split(',').collect()
    }
}

/// Candidates of a relation field: (uuid, display label), naturally sorted by label (stable).
pub fn relation_candidates(f: &FieldDef, ctx: &Ctx) -> Vec<(String, String)> {
    let Some(target) = &f.target else {
        return Vec::new();
    };
    let display = f.display.as_deref().unwrap_or("name");
    let mut c: Vec<(String, String)> = ctx
        .data
        .items(target)
        .iter()
        .filter(|i| {
            f.filter
                .as_ref()
                .is_none_or(|(field, re)| re.is_match(i.get(field)))
        })
        .map(|i| (i.uuid.clone(), i.get(display).to_string()))
        .collect();
    if !f.sorted {
        c.sort_by(|a, b| natcasecmp(&a.1, &b.1));
    }
    c
}

fn interface_options(f: &FieldDef, ctx: &Ctx) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = ctx.interfaces.to_vec();
    if f.sorted {
        v.sort_by(|a, b| a.0.cmp(&b.0));
    }
    v
}

/// The option list (key, label) of a list-like field, or `None` for scalar fields.
fn options_of(f: &FieldDef, ctx: &Ctx) -> Option<Vec<(String, String)>> {
    match f.ty {
        FieldType::Option => Some(f.opts.clone()),
        FieldType::Relation => Some(relation_candidates(f, ctx)),
        FieldType::Interface => Some(interface_options(f, ctx)),
        FieldType::Certificate => Some(Vec::new()),
        _ => None,
    }
}

fn opt_entry(label: &str, selected: bool) -> Value {
    json!({"value": label, "selected": if selected { 1 } else { 0 }})
}

/// The `get*` shape of one field.
pub fn render_field(f: &FieldDef, v: &str, ctx: &Ctx) -> Value {
    if f.ty == FieldType::CsvList {
        let mut m = Map::new();
        if v.is_empty() {
            m.insert(String::new(), opt_entry("", true));
        } else {
            for item in v.split(',') {
                m.insert(item.to_string(), opt_entry(item, true));
            }
        }
        return Value::Object(m);
    }
    let Some(options) = options_of(f, ctx) else {
        return Value::String(v.to_string());
    };
    let selected = split_multi(v);
    let mut m = Map::new();
    if !f.multi && !f.required {
        m.insert(String::new(), opt_entry("None", v.is_empty()));
    }
    for (key, label) in &options {
        m.insert(
            key.clone(),
            opt_entry(label, selected.contains(&key.as_str())),
        );
    }
    if m.is_empty() {
        Value::Array(Vec::new())
    } else {
        Value::Object(m)
    }
}

/// The `get*` shape of a whole record.
pub fn render_item(
    section: &Section,
    values: &BTreeMap<String, String>,
    ctx: &Ctx,
) -> Map<String, Value> {
    let mut m = Map::new();
    for f in &section.fields {
        let v = values.get(&f.name).map(String::as_str).unwrap_or("");
        m.insert(f.name.clone(), render_field(f, v, ctx));
    }
    m
}

/// The display label of a stored value (labels of selected options joined by ", "), if the field has one.
pub fn label_of(f: &FieldDef, v: &str, ctx: &Ctx) -> Option<String> {
    let options = options_of(f, ctx)?;
    let labels: Vec<String> = split_multi(v)
        .into_iter()
        .map(|k| {
            options
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, l)| l.clone())
                .unwrap_or_else(|| k.to_string())
        })
        .collect();
    Some(labels.join(", "))
}

/// A search row: `uuid`, every field raw, plus `%field` when the label differs from the value.
pub fn search_row(section: &Section, item: &Item, ctx: &Ctx) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("uuid".into(), Value::String(item.uuid.clone()));
    for f in &section.fields {
        let v = item.get(&f.name);
        m.insert(f.name.clone(), Value::String(v.to_string()));
        if let Some(label) = label_of(f, v, ctx) {
            if label != v {
                m.insert(format!("%{}", f.name), Value::String(label));
            }
        }
    }
    m
}

/// Why input could not be applied at all (answered with HTTP 500 "Unexpected error" like OPNsense 26.7).
#[derive(Debug)]
pub struct InputError(pub String);

/// PHP's string cast of a posted JSON value; `None` = leave unchanged (`null`).
pub fn php_string(v: &Value) -> Result<Option<String>, InputError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(true) => Ok(Some("1".into())),
        Value::Bool(false) => Ok(Some(String::new())),
        Value::Number(n) => Ok(Some(n.to_string())),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Array(_) | Value::Object(_) => {
            Err(InputError("array given for a scalar field".into()))
        }
    }
}

/// Copies posted keys onto a record (unknown keys ignored, `null` skipped); returns the names of changed fields.
pub fn apply_input(
    section: &Section,
    values: &mut BTreeMap<String, String>,
    input: &Map<String, Value>,
) -> Result<Vec<String>, InputError> {
    let mut changed = Vec::new();
    for f in &section.fields {
        if f.volatile || f.ty == FieldType::UniqueId {
            continue;
        }
        let Some(raw) = input.get(&f.name) else {
            continue;
        };
        let Some(mut s) = php_string(raw)? else {
            continue;
        };
        if f.lower || matches!(f.ty, FieldType::Network | FieldType::VipNetwork) {
            s = s.trim().to_lowercase();
        }
        if values.get(&f.name) != Some(&s) {
            changed.push(f.name.clone());
        }
        values.insert(f.name.clone(), s);
    }
    Ok(changed)
}

/// Validation messages per field, in field order; one message → string, more → list (duplicates collapse).
#[derive(Debug, Default, Clone)]
pub struct Validations(pub Vec<(String, Vec<String>)>);

impl Validations {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn add(&mut self, key: impl Into<String>, msg: impl Into<String>) {
        let key = key.into();
        if let Some((_, v)) = self.0.iter_mut().find(|(k, _)| *k == key) {
            v.push(msg.into());
        } else {
            self.0.push((key, vec![msg.into()]));
        }
    }

    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, msgs) in &self.0 {
            if msgs.len() == 1 {
                m.insert(k.clone(), Value::String(msgs[0].clone()));
            } else {
                let mut uniq: Vec<String> = Vec::new();
                for x in msgs {
                    if !uniq.contains(x) {
                        uniq.push(x.clone());
                    }
                }
                m.insert(
                    k.clone(),
                    Value::Array(uniq.into_iter().map(Value::String).collect()),
                );
            }
        }
        Value::Object(m)
    }
}

fn php_is_numeric(s: &str) -> bool {
    let t = s.trim_start();
    !t.is_empty() && t.parse::<f64>().is_ok() && !t.contains(['x', 'X', 'n', 'N', 'i', 'I'])
}

fn int_of(s: &str) -> Option<i64> {
    let t = s.trim();
    if t.starts_with('+') {
        return None;
    }
    t.parse::<i64>().ok()
}

pub fn valid_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

pub fn valid_network(s: &str) -> bool {
    match s.split_once('/') {
        None => valid_ip(s),
        Some((ip, bits)) => match (ip.parse::<std::net::IpAddr>(), bits.parse::<u8>()) {
            (Ok(std::net::IpAddr::V4(_)), Ok(b)) => b <= 32,
            (Ok(std::net::IpAddr::V6(_)), Ok(b)) => b <= 128,
            _ => false,
        },
    }
}

fn field_messages(f: &FieldDef, v: &str, ctx: &Ctx) -> Vec<String> {
    let mut out = Vec::new();
    if v.is_empty() {
        if f.required {
            out.push("A value is required.".to_string());
        }
        return out;
    }
    let msg = |default: &str| f.msg.clone().unwrap_or_else(|| default.to_string());
    match f.ty {
        FieldType::Boolean => {
            if v != "0" && v != "1" {
                out.push(msg("Value should be a boolean (0,1)."));
            }
        }
        FieldType::Integer => {
            let default = match (f.min, f.max) {
                (Some(a), Some(b)) => format!("Please specify a value between {a} and {b}."),
                _ => "Please specify a valid integer.".to_string(),
            };
            let m = msg(&default);
            let minmax_fail = if f.min.is_some() || f.max.is_some() {
                match v.trim().parse::<f64>() {
                    Ok(x) if php_is_numeric(v) => {
                        f.min.map(|a| x < a as f64).unwrap_or(false)
                            || f.max.map(|b| x > b as f64).unwrap_or(false)
                    }
                    _ => true,
                }
            } else {
                false
            };
            if minmax_fail {
                out.push(m.clone());
            }
            if int_of(v).is_none() {
                out.push(m);
            }
        }
        FieldType::Option | FieldType::Interface => {
            let keys: Vec<String> = options_of(f, ctx)
                .unwrap_or_default()
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let items = if f.multi { split_multi(v) } else { vec![v] };
            for it in items {
                if !keys.iter().any(|k| k == it) {
                    out.push(if f.multi {
                        format!("Option [{it}] not in list.")
                    } else {
                        msg("Option [] not in list.")
                    });
                }
            }
        }
        FieldType::Relation => {
            let keys: Vec<String> = relation_candidates(f, ctx)
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            let items = if f.multi { split_multi(v) } else { vec![v] };
            if items.iter().any(|it| !keys.iter().any(|k| k == it)) {
                out.push(msg("Related item not found"));
            }
        }
        FieldType::VipNetwork => {
            if !valid_ip(v) {
                out.push(msg("A valid network address is required."));
            }
        }
        FieldType::Network => {
            if !valid_network(v) {
                out.push(msg("Please specify a valid network segment or IP address."));
            }
        }
        FieldType::Description => {
            if v.chars().count() > 255
                || v.chars()
                    .any(|c| matches!(c, '\n' | '\0' | '\x0b' | '\x0c'))
            {
                out.push(msg(
                    "Description should be a string between 1 and 255 characters.",
                ));
            }
        }
        FieldType::Certificate => out.push(msg("Please select a valid certificate from the list.")),
        _ => {
            if let Some(mask) = &f.mask {
                if !mask_matches(mask, v) {
                    out.push(msg("Validation failed."));
                }
            }
        }
    }
    out
}

/// Field-level validation. `only`: validate just these fields (OPNsense validates changed fields; `add` marks all).
pub fn validate(
    section: &Section,
    values: &BTreeMap<String, String>,
    only: Option<&[String]>,
    ctx: &Ctx,
    prefix: &str,
) -> Validations {
    let mut out = Validations::default();
    for f in &section.fields {
        if f.volatile || f.ty == FieldType::UniqueId || f.ty == FieldType::AliasContent {
            continue;
        }
        if let Some(only) = only {
            if !only.contains(&f.name) {
                continue;
            }
        }
        let v = values.get(&f.name).map(String::as_str).unwrap_or("");
        for m in field_messages(f, v, ctx) {
            out.add(format!("{prefix}.{}", f.name), m);
        }
    }
    out
}

/// Search parameters (`current`, `rowCount`, `searchPhrase`, `sort`) from a POST body and/or query string.
#[derive(Debug, Clone)]
pub struct SearchParams {
    pub current: i64,
    pub row_count: i64,
    pub phrase: String,
    pub sort: Vec<(String, bool)>,
}

impl SearchParams {
    pub fn from_request(query: &Map<String, Value>, body: &Map<String, Value>) -> Self {
        let pick = |k: &str| body.get(k).or_else(|| query.get(k));
        let num = |v: Option<&Value>, d: i64| -> i64 {
            match v {
                Some(Value::Number(n)) => n.as_i64().unwrap_or(d),
                Some(Value::String(s)) => s.trim().parse().unwrap_or(d),
                _ => d,
            }
        };
        let current = num(pick("current"), 1).max(1);
        let row_count = num(pick("rowCount"), -1);
        let phrase = match pick("searchPhrase") {
            Some(Value::String(s)) => s.clone(),
            _ => String::new(),
        };
        let mut sort = Vec::new();
        if let Some(Value::Object(m)) = pick("sort") {
            for (k, v) in m {
                sort.push((
                    k.clone(),
                    v.as_str()
                        .map(|s| s.eq_ignore_ascii_case("desc"))
                        .unwrap_or(false),
                ));
            }
        }
        SearchParams {
            current,
            row_count,
            phrase,
            sort,
        }
    }
}

/// Filters, sorts and pages rows like `UIModelGrid`: all phrase tokens must match one of `search_fields` (label or
/// raw value, case-insensitive); sort key = sort fields + uuid, natural case-insensitive.
pub fn search(
    mut rows: Vec<Map<String, Value>>,
    params: &SearchParams,
    search_fields: &[&str],
    default_sort: &[&str],
) -> Value {
    let text = |row: &Map<String, Value>, f: &str| -> Vec<String> {
        let mut v = Vec::new();
        for k in [format!("%{f}"), f.to_string()] {
            if let Some(Value::String(s)) = row.get(&k) {
                v.push(s.to_lowercase());
            }
        }
        v
    };
    let tokens: Vec<String> = params
        .phrase
        .split_whitespace()
        .map(|t| t.to_lowercase())
        .collect();
    if !tokens.is_empty() {
        rows.retain(|row| {
            tokens.iter().all(|tok| {
                search_fields
                    .iter()
                    .any(|f| text(row, f).iter().any(|s| s.contains(tok.as_str())))
            })
        });
    }
    let (sort_fields, desc): (Vec<String>, bool) = if params.sort.is_empty() {
        (default_sort.iter().map(|s| s.to_string()).collect(), false)
    } else {
        (
            params.sort.iter().map(|(f, _)| f.clone()).collect(),
            params.sort[0].1,
        )
    };
    let key = |row: &Map<String, Value>| -> String {
        let mut k = String::new();
        for f in &sort_fields {
            if let Some(Value::String(s)) = row.get(&format!("%{f}")).or_else(|| row.get(f)) {
                k.push_str(s);
            }
            k.push(' ');
        }
        if let Some(Value::String(u)) = row.get("uuid") {
            k.push_str(u);
        }
        k
    };
    rows.sort_by(|a, b| {
        let o = natcasecmp(&key(a), &key(b));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let total = rows.len();
    let page: Vec<Value> = if params.row_count > 0 {
        let skip = ((params.current - 1) * params.row_count) as usize;
        rows.into_iter()
            .skip(skip)
            .take(params.row_count as usize)
            .map(Value::Object)
            .collect()
    } else {
        rows.into_iter().map(Value::Object).collect()
    };
    json!({"rows": page.clone(), "rowCount": page.len(), "total": total, "current": params.current})
}

/// Natural order helper for callers that sort by a label.
pub fn nat(a: &str, b: &str) -> Ordering {
    natcasecmp(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema;

    fn ctx(data: &ModelData) -> Ctx<'_> {
        Ctx {
            data,
            interfaces: &[],
        }
    }

    #[test]
    fn integer_quirk_one_element_array_when_both_validators_fail() {
        let s = schema::haproxy().section("servers.server").unwrap();
        let data = ModelData::default();
        let mut v = defaults(s);
        v.insert("name".into(), "x".into());
        v.insert("weight".into(), "abc".into());
        v.insert("port".into(), "99999".into());
        let val = validate(s, &v, None, &ctx(&data), "server").to_json();
        assert_eq!(
            val["server.weight"],
            json!(["Please specify a value between 0 and 256."])
        );
        assert_eq!(
            val["server.port"],
            json!("Please specify a value between 1 and 65535.")
        );
    }

    #[test]
    fn uniqid_has_php_shape_and_uuid_regex_is_strict() {
        let id = uniqid();
        assert!(
            regex::Regex::new(r"^[0-9a-f]{13}[0-9]\.[0-9]{8}$")
                .unwrap()
                .is_match(&id),
            "{id}"
        );
        assert!(is_lower_v4_uuid(&new_uuid()));
        assert!(!is_lower_v4_uuid("00000000-0000-0000-0000-000000000000"));
        assert!(!is_lower_v4_uuid(&new_uuid().to_uppercase()));
    }
}
