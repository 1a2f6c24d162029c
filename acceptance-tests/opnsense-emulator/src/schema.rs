//! Field definitions of the emulated OPNsense models.
//!
//! The emulator is only useful if it answers exactly like a real box: same field order, same defaults, same option
//! labels, same validation messages. Hand-typing ~650 HAProxy fields would drift, so the definitions live in data
//! files beside this module (`schema/*.json`) that one generic engine ([`crate::model`]) interprets:
//!
//! - `haproxy.json` was derived once from os-haproxy 5.1's model definition (field names, types, defaults, masks,
//!   ranges, option labels and validation messages: the facts a client can observe) and checked field by field
//!   against the recorded `settings/get` answer in `testdata/opnsense-samples/`.
//! - `vip.json`, `alias.json` and `filter.json` are written by hand from the recorded samples and the reference notes
//!   (`shared/reference/opnsense-api.md` §3, §4).
//!
//! Format: `{ "<section path>": {"array": bool, "fields": [ {n, t, req, def, multi, sorted, mask, msg, min, max,
//! lower, volatile, opts: [[key,label]...], target, display} ] } }`.

use std::collections::HashMap;
use std::sync::OnceLock;

use regex::Regex;
use serde::Deserialize;

/// How a field stores, renders and validates its value (OPNsense's `*Field` classes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Boolean,
    Text,
    Integer,
    Option,
    Relation,
    CsvList,
    Certificate,
    UniqueId,
    Hostname,
    Network,
    Description,
    /// Keys of the box's interfaces (`lan`, `wan`, ...).
    Interface,
    /// VIP `subnet`: an IP address (the `network` overlay is handled by the VIP controller).
    VipNetwork,
    AliasName,
    AliasContent,
    NetworkAlias,
    Port,
}

#[derive(Debug, Clone)]
pub struct FieldDef {
    pub name: String,
    pub ty: FieldType,
    pub required: bool,
    pub default: String,
    pub multi: bool,
    pub sorted: bool,
    pub mask: Option<Mask>,
    pub msg: Option<String>,
    pub min: Option<i64>,
    pub max: Option<i64>,
    pub lower: bool,
    pub volatile: bool,
    pub opts: Vec<(String, String)>,
    /// Relation target section, e.g. `servers.server`.
    pub target: Option<String>,
    pub display: Option<String>,
    /// Relation candidates must have a field matching this regex: (field, regex).
    pub filter: Option<(String, Regex)>,
}

impl FieldDef {
    pub fn label_of(&self, key: &str) -> Option<&str> {
        self.opts
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, l)| l.as_str())
    }
}

#[derive(Debug, Clone)]
pub struct Section {
    pub path: String,
    pub array: bool,
    pub fields: Vec<FieldDef>,
}

impl Section {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }
}

/// All sections of one model, in document order.
#[derive(Debug, Clone)]
pub struct Schema {
    pub sections: Vec<Section>,
    index: HashMap<String, usize>,
}

impl Schema {
    pub fn section(&self, path: &str) -> Option<&Section> {
        self.index.get(path).map(|i| &self.sections[*i])
    }

    fn parse(text: &str) -> Schema {
        #[derive(Deserialize)]
        struct RawSection {
            array: bool,
            fields: Vec<RawField>,
        }
        #[derive(Deserialize)]
        struct RawField {
            n: String,
            t: String,
            #[serde(default)]
            req: bool,
            #[serde(default)]
            def: Option<String>,
            #[serde(default)]
            multi: bool,
            #[serde(default)]
            sorted: bool,
            #[serde(default)]
            mask: Option<String>,
            #[serde(default)]
            msg: Option<String>,
            #[serde(default)]
            min: Option<i64>,
            #[serde(default)]
            max: Option<i64>,
            #[serde(default)]
            lower: bool,
            #[serde(default)]
            volatile: bool,
            #[serde(default)]
            opts: Vec<(String, String)>,
            #[serde(default)]
            target: Option<String>,
            #[serde(default)]
            display: Option<String>,
            #[serde(default)]
            filter: Option<(String, String)>,
        }
        let raw: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).expect("embedded schema is valid JSON");
        let mut sections = Vec::new();
        let mut index = HashMap::new();
        for (path, v) in raw {
            let rs: RawSection = serde_json::from_value(v).expect("embedded schema section");
            let fields = rs
                .fields
                .into_iter()
                .map(|f| FieldDef {
                    ty: match f.t.as_str() {
                        "boolean" => FieldType::Boolean,
                        "integer" => FieldType::Integer,
                        "option" => FieldType::Option,
                        "modelrelation" => FieldType::Relation,
                        "csvlist" => FieldType::CsvList,
                        "certificate" => FieldType::Certificate,
                        "uniqueid" => FieldType::UniqueId,
                        "hostname" => FieldType::Hostname,
                        "network" => FieldType::Network,
                        "description" => FieldType::Description,
                        "interface" => FieldType::Interface,
                        "vipnetwork" => FieldType::VipNetwork,
                        "aliasname" => FieldType::AliasName,
                        "aliascontent" => FieldType::AliasContent,
                        "networkalias" => FieldType::NetworkAlias,
                        "port" => FieldType::Port,
                        _ => FieldType::Text,
                    },
                    name: f.n,
                    required: f.req,
                    default: f.def.unwrap_or_default(),
                    multi: f.multi,
                    sorted: f.sorted,
                    mask: f.mask.map(|src| Mask {
                        src,
                        re: OnceLock::new(),
                    }),
                    msg: f.msg,
                    min: f.min,
                    max: f.max,
                    lower: f.lower,
                    volatile: f.volatile,
                    opts: f.opts,
                    target: f.target,
                    display: f.display,
                    filter: f
                        .filter
                        .and_then(|(field, re)| Regex::new(&re).ok().map(|r| (field, r))),
                })
                .collect();
            index.insert(path.clone(), sections.len());
            sections.push(Section {
                path,
                array: rs.array,
                fields,
            });
        }
        Schema { sections, index }
    }
}

/// Turns a PCRE literal such as `/^([0-9a-z]){1,255}$/u` into a Rust regex. Masks Rust's engine cannot express are
/// dropped (the field then accepts anything), which only makes the emulator more lenient, never stricter.
fn compile_php_regex(lit: &str) -> Option<Regex> {
    let body = lit.strip_prefix('/')?;
    let end = body.rfind('/')?;
    let flags = &body[end + 1..];
    let mut pattern = String::new();
    if flags.contains('i') {
        pattern.push_str("(?i)");
    }
    if flags.contains('s') {
        pattern.push_str("(?s)");
    }
    pattern.push_str(&body[..end]);
    Regex::new(&pattern).ok()
}

/// A field mask, compiled on first use: compiling all ~650 masks up front costs seconds in debug builds, and most
/// are never needed by a test.
#[derive(Debug, Clone)]
pub struct Mask {
    pub src: String,
    re: OnceLock<Option<Regex>>,
}

impl Mask {
    /// The compiled regex, or `None` when Rust's engine cannot express it (the field then accepts anything).
    pub fn regex(&self) -> Option<&Regex> {
        self.re
            .get_or_init(|| compile_php_regex(&self.src))
            .as_ref()
    }
}

/// OPNsense's Regex validator: the first match must be the whole value (so unanchored masks behave anchored).
pub fn mask_matches(mask: &Mask, value: &str) -> bool {
    let Some(mask) = mask.regex() else {
        return true;
    };
    mask.find(value)
        .map(|m| m.as_str() == value)
        .unwrap_or(false)
}

pub fn haproxy() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse(include_str!("schema/haproxy.json")))
}

pub fn vip() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse(include_str!("schema/vip.json")))
}

pub fn alias() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse(include_str!("schema/alias.json")))
}

/// `core/hasync` (System › High Availability › Settings), written by hand from OPNsense core's `Hasync.xml`
/// (field names, defaults, pfsync versions); `syncitems` offers the sections this emulator can sync.
pub fn hasync() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse(include_str!("schema/hasync.json")))
}

pub fn filter() -> &'static Schema {
    static S: OnceLock<Schema> = OnceLock::new();
    S.get_or_init(|| Schema::parse(include_str!("schema/filter.json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_load_and_masks_compile() {
        let h = haproxy();
        let server = h.section("servers.server").unwrap();
        assert_eq!(server.fields.len(), 29);
        let name = server.field("name").unwrap();
        assert!(name.mask.as_ref().unwrap().regex().is_some());
        assert!(mask_matches(name.mask.as_ref().unwrap(), "web1"));
        assert!(!mask_matches(name.mask.as_ref().unwrap(), "bad name!"));
        // unanchored time mask behaves anchored
        let ci = server.field("checkInterval").unwrap();
        assert!(mask_matches(ci.mask.as_ref().unwrap(), "10s"));
        assert!(!mask_matches(ci.mask.as_ref().unwrap(), "10sx"));
        let bind = h
            .section("frontends.frontend")
            .unwrap()
            .field("bind")
            .unwrap();
        assert!(bind.mask.as_ref().unwrap().regex().is_some());
        assert!(vip().section("vip").is_some());
        assert!(alias().section("aliases.alias").is_some());
        assert!(filter().section("rules.rule").is_some());
    }

    #[test]
    fn masks_of_the_emulated_sections_all_compile() {
        let mut broken = Vec::new();
        for sec in &haproxy().sections {
            for f in &sec.fields {
                if let Some(m) = &f.mask {
                    if m.regex().is_none() {
                        broken.push(format!("{}.{}: {}", sec.path, f.name, m.src));
                    }
                }
            }
        }
        // every mask Rust's regex engine cannot express would make that field accept anything
        assert!(broken.is_empty(), "{broken:#?}");
    }
}
