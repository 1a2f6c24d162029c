//! The schema-driven part of `PlanResourceChange`, on untyped values.
//!
//! Terraform proposes a new state (configuration merged with prior computed values); the provider must turn
//! that into a plan that obeys the contract in hashicorp/terraform `docs/resource-instance-change-lifecycle.md`:
//! configured values stay exactly as configured, computed attributes may be filled in only where configuration
//! is null, and anything the provider cannot predict must be unknown. This module does what the schema alone
//! decides, in this order:
//!
//! 1. write-only attributes are planned as null (they never reach plan or state);
//! 2. defaults replace null configuration of optional+computed attributes;
//! 3. replacement paths are collected from `requires_replace` flags (update only);
//! 4. if the object is created or changes, every computed attribute whose configuration is null becomes
//!    unknown, except `use_state_for_unknown` ones, which keep their prior value unless the object is replaced.
//!
//! The resource's own `modify_plan` hook runs afterwards on the typed model (see `adapter.rs`).

use std::collections::BTreeMap;

use super::codec::{PathStep, Value};
use super::diagnostics::AttrPath;
use super::schema::{AttrKind, Attribute, Block, BlockNesting, ObjectNesting, RequiresReplace};

/// The schema-driven plan.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemaPlan {
    /// The planned state.
    pub planned: Value,
    /// Paths whose change forces replacement.
    pub requires_replace: Vec<AttrPath>,
}

/// Plans `proposed` against `prior` (null on create) and `config`. A null `proposed` is a destroy plan.
pub fn plan(block: &Block, prior: &Value, proposed: &Value, config: &Value) -> SchemaPlan {
    if proposed.is_null() {
        return SchemaPlan {
            planned: Value::Null,
            requires_replace: Vec::new(),
        };
    }
    let create = prior.is_null();
    let mut planned = proposed.clone();
    apply_defaults(block, config, &mut planned);

    let mut requires_replace = Vec::new();
    if !create {
        collect_replace(
            block,
            prior,
            config,
            &planned,
            &mut Vec::new(),
            &mut requires_replace,
        );
    }
    let changed = create || &planned != prior;
    if changed {
        let replace = !requires_replace.is_empty();
        let prior_opt = if create { None } else { Some(prior) };
        mark_unknown(block, prior_opt, config, &mut planned, replace);
    }
    SchemaPlan {
        planned,
        requires_replace,
    }
}

fn obj_mut(v: &mut Value) -> Option<&mut BTreeMap<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

fn get<'a>(v: Option<&'a Value>, name: &str) -> Option<&'a Value> {
    v.and_then(|v| v.get(name))
}

static NULL: Value = Value::Null;

/// Calls `f(block, prior_elem, config_elem, planned_elem)` for each instance of a nested block.
fn for_each_instance(
    nesting: BlockNesting,
    prior: Option<&Value>,
    config: &Value,
    planned: &mut Value,
    f: &mut dyn FnMut(Option<&Value>, &Value, &mut Value),
) {
    match nesting {
        BlockNesting::Single | BlockNesting::Group => {
            if matches!(planned, Value::Object(_)) {
                f(prior.filter(|p| !p.is_null()), config, planned);
            }
        }
        BlockNesting::List => {
            if let Value::List(items) = planned {
                let cfg = config.as_elements().unwrap_or(&[]);
                let pri = prior.and_then(Value::as_elements).unwrap_or(&[]);
                for (i, item) in items.iter_mut().enumerate() {
                    f(pri.get(i), cfg.get(i).unwrap_or(&NULL), item);
                }
            }
        }
        BlockNesting::Set => {
            // Set elements have no identity across plan/prior/config: use the element itself as config
            // (configuration values are preserved in the proposed element) and no prior.
            if let Value::Set(items) = planned {
                let mut new_items = Vec::with_capacity(items.len());
                for item in items.iter() {
                    let mut it = item.clone();
                    f(None, item, &mut it);
                    new_items.push(it);
                }
                *planned = Value::set(new_items);
            }
        }
        BlockNesting::Map => {
            if let Value::Map(items) = planned {
                for (k, item) in items.iter_mut() {
                    f(get(prior, k), config.get(k).unwrap_or(&NULL), item);
                }
            }
        }
    }
}

fn apply_defaults(block: &Block, config: &Value, planned: &mut Value) {
    let Some(map) = obj_mut(planned) else { return };
    for a in &block.attributes {
        let cfg = config.get(&a.name).unwrap_or(&NULL);
        let slot = map.entry(a.name.clone()).or_insert(Value::Null);
        if a.write_only {
            *slot = Value::Null;
            continue;
        }
        if cfg.is_null() {
            if let Some(d) = &a.default {
                *slot = d.clone();
                continue;
            }
        }
        if let AttrKind::Nested(n) = &a.kind {
            if n.nesting == ObjectNesting::Single && matches!(slot, Value::Object(_)) {
                let inner = Block {
                    attributes: n.attributes.clone(),
                    ..Default::default()
                };
                apply_defaults(&inner, cfg, slot);
            }
        }
    }
    for b in &block.blocks {
        let cfg = config.get(&b.name).unwrap_or(&NULL);
        if let Some(slot) = map.get_mut(&b.name) {
            for_each_instance(b.nesting, None, cfg, slot, &mut |_, c, p| {
                apply_defaults(&b.block, c, p)
            });
        }
    }
}

fn attr_needs_replace(a: &Attribute, prior: &Value, config: &Value, planned: &Value) -> bool {
    if prior == planned {
        return false;
    }
    match &a.requires_replace {
        RequiresReplace::Never => false,
        RequiresReplace::Always => true,
        RequiresReplace::IfConfigured => !config.is_null(),
        RequiresReplace::If(f) => planned.is_unknown() || f(prior, planned),
    }
}

fn collect_replace(
    block: &Block,
    prior: &Value,
    config: &Value,
    planned: &Value,
    path: &mut Vec<PathStep>,
    out: &mut Vec<AttrPath>,
) {
    for a in &block.attributes {
        let pr = prior.get(&a.name).unwrap_or(&NULL);
        let cf = config.get(&a.name).unwrap_or(&NULL);
        let pl = planned.get(&a.name).unwrap_or(&NULL);
        path.push(PathStep::Attr(a.name.clone()));
        if attr_needs_replace(a, pr, cf, pl) {
            out.push(path.clone());
        } else if let AttrKind::Nested(n) = &a.kind {
            if n.nesting == ObjectNesting::Single && !pr.is_null() && !pl.is_null() {
                let inner = Block {
                    attributes: n.attributes.clone(),
                    ..Default::default()
                };
                collect_replace(&inner, pr, cf, pl, path, out);
            }
        }
        path.pop();
    }
    for b in &block.blocks {
        let pr = prior.get(&b.name).unwrap_or(&NULL);
        let cf = config.get(&b.name).unwrap_or(&NULL);
        let pl = planned.get(&b.name).unwrap_or(&NULL);
        path.push(PathStep::Attr(b.name.clone()));
        if b.requires_replace && pr != pl {
            out.push(path.clone());
        } else if matches!(b.nesting, BlockNesting::Single | BlockNesting::Group)
            && !pr.is_null()
            && !pl.is_null()
        {
            collect_replace(&b.block, pr, cf, pl, path, out);
        } else if b.nesting == BlockNesting::List {
            let (pe, ce, le) = (
                pr.as_elements().unwrap_or(&[]),
                cf.as_elements().unwrap_or(&[]),
                pl.as_elements().unwrap_or(&[]),
            );
            for (i, (p, l)) in pe.iter().zip(le.iter()).enumerate() {
                path.push(PathStep::Index(i as i64));
                collect_replace(&b.block, p, ce.get(i).unwrap_or(&NULL), l, path, out);
                path.pop();
            }
        } else if pr != pl && block_has_replace_attr(&b.block) {
            // Sets and maps: no stable element identity; replace on any change if a member asks for it.
            out.push(path.clone());
        }
        path.pop();
    }
}

fn block_has_replace_attr(b: &Block) -> bool {
    b.attributes
        .iter()
        .any(|a| !matches!(a.requires_replace, RequiresReplace::Never))
        || b.blocks
            .iter()
            .any(|nb| nb.requires_replace || block_has_replace_attr(&nb.block))
}

fn mark_unknown(
    block: &Block,
    prior: Option<&Value>,
    config: &Value,
    planned: &mut Value,
    replace: bool,
) {
    let Some(map) = obj_mut(planned) else { return };
    for a in &block.attributes {
        let cfg = config.get(&a.name).unwrap_or(&NULL);
        let slot = map.entry(a.name.clone()).or_insert(Value::Null);
        if a.write_only {
            continue;
        }
        if a.computed && cfg.is_null() && a.default.is_none() {
            let pr = get(prior, &a.name);
            let keep = a.use_state_for_unknown
                && !replace
                && pr.is_some_and(|p| !p.is_null() && p.is_wholly_known());
            *slot = if keep {
                pr.cloned().unwrap_or(Value::Unknown)
            } else {
                Value::Unknown
            };
            continue;
        }
        if let AttrKind::Nested(n) = &a.kind {
            if n.nesting == ObjectNesting::Single && matches!(slot, Value::Object(_)) {
                let inner = Block {
                    attributes: n.attributes.clone(),
                    ..Default::default()
                };
                mark_unknown(
                    &inner,
                    get(prior, &a.name).filter(|p| !p.is_null()),
                    cfg,
                    slot,
                    replace,
                );
            }
        }
    }
    for b in &block.blocks {
        let cfg = config.get(&b.name).unwrap_or(&NULL);
        let pr = get(prior, &b.name);
        if let Some(slot) = map.get_mut(&b.name) {
            for_each_instance(b.nesting, pr, cfg, slot, &mut |p, c, pl| {
                mark_unknown(&b.block, p, c, pl, replace)
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec::Type;
    use crate::plugin::schema::{Attribute, NestedBlock, Schema};

    fn schema() -> Schema {
        Schema::new("t")
            .attribute(
                Attribute::string("id")
                    .computed()
                    .use_state_for_unknown()
                    .description("d"),
            )
            .attribute(Attribute::string("name").required().description("d"))
            .attribute(
                Attribute::string("mode")
                    .default_string("a")
                    .description("d"),
            )
            .attribute(
                Attribute::string("zone")
                    .required()
                    .requires_replace()
                    .description("d"),
            )
            .attribute(Attribute::string("stamp").computed().description("d"))
            .attribute(
                Attribute::string("pw")
                    .optional()
                    .write_only()
                    .description("d"),
            )
            .attribute(
                Attribute::set("tags", Type::String)
                    .optional()
                    .description("d"),
            )
            .block(NestedBlock::single(
                "opts",
                Block::new("d")
                    .attribute(Attribute::number("port").optional().description("d"))
                    .attribute(Attribute::string("gen").computed().description("d")),
            ))
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::object(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())))
    }

    fn s(x: &str) -> Value {
        Value::from(x)
    }

    fn config(name: &str, zone: &str, mode: Value) -> Value {
        obj(&[
            ("id", Value::Null),
            ("name", s(name)),
            ("mode", mode),
            ("zone", s(zone)),
            ("stamp", Value::Null),
            ("pw", s("secret")),
            ("tags", Value::Null),
            (
                "opts",
                obj(&[("port", Value::from(80)), ("gen", Value::Null)]),
            ),
        ])
    }

    fn state(name: &str, zone: &str, mode: &str) -> Value {
        obj(&[
            ("id", s("i-1")),
            ("name", s(name)),
            ("mode", s(mode)),
            ("zone", s(zone)),
            ("stamp", s("t1")),
            ("pw", Value::Null),
            ("tags", Value::Null),
            ("opts", obj(&[("port", Value::from(80)), ("gen", s("g1"))])),
        ])
    }

    /// Terraform's proposed new state: config, with prior values where config is null and the attr computed.
    fn proposed(prior: &Value, config: &Value) -> Value {
        let sch = schema();
        let mut out = config.clone();
        if let (Value::Object(o), Some(p)) = (&mut out, Some(prior).filter(|p| !p.is_null())) {
            for a in &sch.block.attributes {
                if a.computed && config.get(&a.name).is_some_and(Value::is_null) {
                    o.insert(
                        a.name.clone(),
                        p.get(&a.name).cloned().unwrap_or(Value::Null),
                    );
                }
            }
            if let (Some(Value::Object(po)), Some(Value::Object(oo))) =
                (p.get("opts").cloned(), o.get_mut("opts"))
            {
                oo.insert("gen".into(), po.get("gen").cloned().unwrap());
            }
        }
        out
    }

    #[test]
    fn create_marks_computed_unknown_and_fills_defaults() {
        let sch = schema();
        let cfg = config("n", "z", Value::Null);
        let p = plan(
            &sch.block,
            &Value::Null,
            &proposed(&Value::Null, &cfg),
            &cfg,
        );
        assert!(p.requires_replace.is_empty());
        assert_eq!(p.planned.get("id"), Some(&Value::Unknown));
        assert_eq!(p.planned.get("stamp"), Some(&Value::Unknown));
        assert_eq!(p.planned.get("mode"), Some(&s("a")));
        assert_eq!(p.planned.get("name"), Some(&s("n")));
        assert_eq!(
            p.planned.get("pw"),
            Some(&Value::Null),
            "write-only never planned"
        );
        assert_eq!(
            p.planned.get("opts").unwrap().get("gen"),
            Some(&Value::Unknown)
        );
        assert_eq!(
            p.planned.get("opts").unwrap().get("port"),
            Some(&Value::from(80))
        );
    }

    #[test]
    fn no_change_is_an_empty_plan() {
        let sch = schema();
        let prior = state("n", "z", "a");
        let cfg = config("n", "z", Value::Null);
        let p = plan(&sch.block, &prior, &proposed(&prior, &cfg), &cfg);
        assert_eq!(p.planned, prior);
        assert!(p.requires_replace.is_empty());
    }

    #[test]
    fn update_keeps_use_state_for_unknown_and_unknowns_the_rest() {
        let sch = schema();
        let prior = state("n", "z", "a");
        let cfg = config("n2", "z", Value::Null);
        let p = plan(&sch.block, &prior, &proposed(&prior, &cfg), &cfg);
        assert!(p.requires_replace.is_empty());
        assert_eq!(p.planned.get("id"), Some(&s("i-1")));
        assert_eq!(p.planned.get("stamp"), Some(&Value::Unknown));
        assert_eq!(p.planned.get("name"), Some(&s("n2")));
    }

    #[test]
    fn removing_a_configured_value_goes_back_to_the_default() {
        let sch = schema();
        let prior = state("n", "z", "b");
        let cfg = config("n", "z", Value::Null);
        let p = plan(&sch.block, &prior, &proposed(&prior, &cfg), &cfg);
        assert_eq!(p.planned.get("mode"), Some(&s("a")));
    }

    #[test]
    fn requires_replace_sets_path_and_drops_use_state() {
        let sch = schema();
        let prior = state("n", "z", "a");
        let cfg = config("n", "z2", Value::Null);
        let p = plan(&sch.block, &prior, &proposed(&prior, &cfg), &cfg);
        assert_eq!(
            p.requires_replace,
            vec![vec![PathStep::Attr("zone".into())]]
        );
        assert_eq!(p.planned.get("id"), Some(&Value::Unknown));
    }

    #[test]
    fn unknown_config_forces_replace_of_requires_replace_attr() {
        let sch = schema();
        let prior = state("n", "z", "a");
        let mut cfg = config("n", "z", Value::Null);
        if let Value::Object(m) = &mut cfg {
            m.insert("zone".into(), Value::Unknown);
        }
        let p = plan(&sch.block, &prior, &proposed(&prior, &cfg), &cfg);
        assert_eq!(p.requires_replace.len(), 1);
    }

    #[test]
    fn destroy_plans_null() {
        let sch = schema();
        let prior = state("n", "z", "a");
        let p = plan(&sch.block, &prior, &Value::Null, &Value::Null);
        assert_eq!(p.planned, Value::Null);
    }
}
