//! Schema builders: attributes, nested attributes and nested blocks, with the behaviour Terraform and the
//! framework attach to them (required/optional/computed, sensitive, write-only, plan modifiers, validators).
//!
//! Resources build a [`Schema`] with these plain Rust types; only `to_proto` (used by the server) knows the
//! protobuf form. The same schema drives the codec: [`Block::value_type`] is the cty object type Terraform
//! encodes values against, so model, schema and wire format cannot drift apart.
//!
//! Every attribute and block needs a description (it becomes the registry docs and `providers schema`);
//! [`Schema::problems`] reports missing ones and contradictory flags, and a unit test runs it over every
//! registered schema.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::codec::{Type, Value};
use super::diagnostics::{AttrPath, Diagnostic, Diagnostics};
use super::proto::tfplugin6 as pb;

/// A versioned schema of a provider, resource, data source or list resource configuration.
#[derive(Clone, Debug)]
pub struct Schema {
    /// Bumped when stored state needs an upgrade (see `Resource::upgrade_state`).
    pub version: i64,
    /// The top-level block.
    pub block: Block,
}

impl Schema {
    /// A schema at version 0 with the given description and no attributes yet.
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            version: 0,
            block: Block::new(description),
        }
    }

    /// Sets the schema version.
    pub fn version(mut self, v: i64) -> Self {
        self.version = v;
        self
    }

    /// Adds an attribute.
    pub fn attribute(mut self, a: Attribute) -> Self {
        self.block.attributes.push(a);
        self
    }

    /// Adds a nested block.
    pub fn block(mut self, b: NestedBlock) -> Self {
        self.block.blocks.push(b);
        self
    }

    /// The cty type of values of this schema.
    pub fn value_type(&self) -> Type {
        self.block.value_type()
    }

    /// Looks up a top-level attribute.
    pub fn attr(&self, name: &str) -> Option<&Attribute> {
        self.block.attributes.iter().find(|a| a.name == name)
    }

    /// Human-readable problems: missing descriptions, contradictory flags. Empty when the schema is sound.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.block.description.trim().is_empty() {
            out.push("the schema has no description".to_string());
        }
        self.block.problems("", &mut out);
        out
    }
}

/// A block: attributes plus nested blocks.
#[derive(Clone, Debug, Default)]
pub struct Block {
    /// What the block is for.
    pub description: String,
    /// Its attributes.
    pub attributes: Vec<Attribute>,
    /// Its nested blocks.
    pub blocks: Vec<NestedBlock>,
    /// Set when the block is deprecated: what to use instead.
    pub deprecation_message: Option<String>,
}

impl Block {
    /// An empty block.
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            description: description.into(),
            ..Default::default()
        }
    }

    /// Adds an attribute.
    pub fn attribute(mut self, a: Attribute) -> Self {
        self.attributes.push(a);
        self
    }

    /// Adds a nested block.
    pub fn block(mut self, b: NestedBlock) -> Self {
        self.blocks.push(b);
        self
    }

    /// The implied cty object type (attributes and nested blocks).
    pub fn value_type(&self) -> Type {
        let mut attrs = BTreeMap::new();
        for a in &self.attributes {
            attrs.insert(a.name.clone(), a.value_type());
        }
        for b in &self.blocks {
            attrs.insert(b.name.clone(), b.value_type());
        }
        Type::Object(attrs)
    }

    fn problems(&self, prefix: &str, out: &mut Vec<String>) {
        let mut seen = std::collections::BTreeSet::new();
        for a in &self.attributes {
            let p = format!("{prefix}{}", a.name);
            if !seen.insert(a.name.clone()) {
                out.push(format!("{p}: duplicate name"));
            }
            a.problems(&p, out);
        }
        for b in &self.blocks {
            let p = format!("{prefix}{}", b.name);
            if !seen.insert(b.name.clone()) {
                out.push(format!("{p}: duplicate name"));
            }
            if b.block.description.trim().is_empty() {
                out.push(format!("{p}: block has no description"));
            }
            b.block.problems(&format!("{p}."), out);
        }
    }
}

/// How an attribute's value is typed: a plain cty type, or nested attributes (`x = { ... }`).
#[derive(Clone, Debug)]
pub enum AttrKind {
    /// A plain type.
    Type(Type),
    /// Nested attributes with their own flags.
    Nested(NestedAttributes),
}

/// Nested attributes: an object (or collection of objects) whose attributes have their own flags.
#[derive(Clone, Debug)]
pub struct NestedAttributes {
    /// Single object, list, set or map of objects.
    pub nesting: ObjectNesting,
    /// The object's attributes.
    pub attributes: Vec<Attribute>,
}

/// Nesting of nested attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectNesting {
    /// `x = { ... }`
    Single,
    /// `x = [{ ... }]`
    List,
    /// `x = [{ ... }]`, unordered
    Set,
    /// `x = { key = { ... } }`
    Map,
}

/// A custom requires-replace predicate over (prior, planned).
pub type ReplaceFn = Arc<dyn Fn(&Value, &Value) -> bool + Send + Sync>;

/// A validator check over (value, path, diagnostics).
pub type CheckFn = Arc<dyn Fn(&Value, &AttrPath, &mut Diagnostics) + Send + Sync>;

/// Where a requires-replace rule applies.
#[derive(Clone)]
pub enum RequiresReplace {
    /// Never (the default).
    Never,
    /// Whenever the planned value differs from the prior state.
    Always,
    /// Only when the attribute is set in configuration (a computed value changing does not replace).
    IfConfigured,
    /// When the function returns true for (prior, planned); both are known and different.
    If(ReplaceFn),
}

impl fmt::Debug for RequiresReplace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequiresReplace::Never => f.write_str("Never"),
            RequiresReplace::Always => f.write_str("Always"),
            RequiresReplace::IfConfigured => f.write_str("IfConfigured"),
            RequiresReplace::If(_) => f.write_str("If(..)"),
        }
    }
}

/// A validator run on a known, non-null attribute value at validate time.
///
/// Unknown and null values are skipped: Terraform validates again once values are known, and required-ness is
/// checked by Terraform itself.
#[derive(Clone)]
pub struct Validator {
    /// Shown in docs, e.g. "one of `tcp`, `http`".
    pub description: String,
    check: CheckFn,
}

impl fmt::Debug for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Validator({})", self.description)
    }
}

impl Validator {
    /// A validator over the raw value.
    pub fn new(
        description: impl Into<String>,
        check: impl Fn(&Value, &AttrPath, &mut Diagnostics) + Send + Sync + 'static,
    ) -> Self {
        Self {
            description: description.into(),
            check: Arc::new(check),
        }
    }

    /// A validator over a string attribute: return `Err(how to fix)` to reject. The message must not echo
    /// the value if the attribute is sensitive.
    pub fn string(
        description: impl Into<String>,
        check: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        let description = description.into();
        let summary = format!("Invalid value: must be {description}");
        Self::new(description, move |v, path, diags| {
            if let Some(s) = v.as_str() {
                if let Err(fix) = check(s) {
                    diags.push(Diagnostic::error(summary.clone(), fix).at(path.clone()));
                }
            }
        })
    }

    /// A validator over an integer attribute.
    pub fn int(
        description: impl Into<String>,
        check: impl Fn(i64) -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        let description = description.into();
        let summary = format!("Invalid value: must be {description}");
        Self::new(description, move |v, path, diags| {
            match v.as_number().and_then(|n| n.as_i64()) {
                Some(i) => {
                    if let Err(fix) = check(i) {
                        diags.push(Diagnostic::error(summary.clone(), fix).at(path.clone()));
                    }
                }
                None if v.is_known() && !v.is_null() => diags.push(
                    Diagnostic::error(summary.clone(), "A whole number is required.")
                        .at(path.clone()),
                ),
                None => {}
            }
        })
    }

    /// The string must be one of `allowed`.
    pub fn one_of(allowed: &'static [&'static str]) -> Self {
        let list = allowed
            .iter()
            .map(|a| format!("\"{a}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let desc = format!("one of {list}");
        Self::string(desc, move |s| {
            if allowed.contains(&s) {
                Ok(())
            } else {
                Err(format!("Use one of {list}."))
            }
        })
    }

    /// The string must not be empty.
    pub fn not_empty() -> Self {
        Self::string("a non-empty string", |s| {
            if s.is_empty() {
                Err("Set a non-empty value or remove the attribute.".into())
            } else {
                Ok(())
            }
        })
    }

    /// The integer must lie in `lo..=hi`.
    pub fn int_between(lo: i64, hi: i64) -> Self {
        Self::int(format!("between {lo} and {hi}"), move |i| {
            if (lo..=hi).contains(&i) {
                Ok(())
            } else {
                Err(format!("Use a whole number from {lo} to {hi}."))
            }
        })
    }

    /// Runs the check (the framework calls this for known, non-null values).
    pub fn run(&self, value: &Value, path: &AttrPath, diags: &mut Diagnostics) {
        (self.check)(value, path, diags)
    }
}

/// One attribute.
#[derive(Clone, Debug)]
pub struct Attribute {
    /// Its name in configuration.
    pub name: String,
    /// Its type.
    pub kind: AttrKind,
    /// What it means, including units, defaults and environment fallbacks.
    pub description: String,
    /// Must be set in configuration.
    pub required: bool,
    /// May be set in configuration.
    pub optional: bool,
    /// The provider may set it.
    pub computed: bool,
    /// Hidden in plan output and logs.
    pub sensitive: bool,
    /// Only in configuration, never stored in plan or state (Terraform ≥ 1.11).
    pub write_only: bool,
    /// Set when deprecated: what to use instead.
    pub deprecation_message: Option<String>,
    /// Keep the prior state value instead of "known after apply" when the plan does not touch it.
    pub use_state_for_unknown: bool,
    /// When a change forces a new object.
    pub requires_replace: RequiresReplace,
    /// Planned when configuration leaves the attribute null (the attribute must be optional + computed).
    pub default: Option<Value>,
    /// Checks run at validate time.
    pub validators: Vec<Validator>,
}

impl Attribute {
    /// An attribute of any cty type.
    pub fn of_type(name: impl Into<String>, ty: Type) -> Self {
        Self {
            name: name.into(),
            kind: AttrKind::Type(ty),
            description: String::new(),
            required: false,
            optional: false,
            computed: false,
            sensitive: false,
            write_only: false,
            deprecation_message: None,
            use_state_for_unknown: false,
            requires_replace: RequiresReplace::Never,
            default: None,
            validators: Vec::new(),
        }
    }

    /// A string attribute.
    pub fn string(name: impl Into<String>) -> Self {
        Self::of_type(name, Type::String)
    }

    /// A number attribute (model it as `Tf<i64>`, `Tf<u16>`, `Tf<f64>`, ...).
    pub fn number(name: impl Into<String>) -> Self {
        Self::of_type(name, Type::Number)
    }

    /// A bool attribute.
    pub fn bool(name: impl Into<String>) -> Self {
        Self::of_type(name, Type::Bool)
    }

    /// A list of `elem`.
    pub fn list(name: impl Into<String>, elem: Type) -> Self {
        Self::of_type(name, Type::List(Box::new(elem)))
    }

    /// A set of `elem`.
    pub fn set(name: impl Into<String>, elem: Type) -> Self {
        Self::of_type(name, Type::Set(Box::new(elem)))
    }

    /// A map of `elem`.
    pub fn map(name: impl Into<String>, elem: Type) -> Self {
        Self::of_type(name, Type::Map(Box::new(elem)))
    }

    /// Nested attributes (`name = { ... }` for [`ObjectNesting::Single`]).
    ///
    /// Caution: Terraform 1.0.x crashes planning a resource whose nested attribute is null (measured with
    /// 1.0.3). Prefer nested blocks ([`NestedBlock`]) while 1.0 is supported.
    pub fn nested(
        name: impl Into<String>,
        nesting: ObjectNesting,
        attributes: Vec<Attribute>,
    ) -> Self {
        let mut a = Self::of_type(name, Type::Dynamic);
        a.kind = AttrKind::Nested(NestedAttributes {
            nesting,
            attributes,
        });
        a
    }

    /// Sets the description (mandatory).
    pub fn description(mut self, d: impl Into<String>) -> Self {
        self.description = d.into();
        self
    }

    /// Must be set in configuration.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// May be set in configuration.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Set by the provider only.
    pub fn computed(mut self) -> Self {
        self.computed = true;
        self
    }

    /// May be set; the provider fills it in otherwise.
    pub fn optional_computed(mut self) -> Self {
        self.optional = true;
        self.computed = true;
        self
    }

    /// Hidden in output.
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Configuration-only (never in plan or state).
    pub fn write_only(mut self) -> Self {
        self.write_only = true;
        self
    }

    /// Deprecated, with what to use instead.
    pub fn deprecated(mut self, message: impl Into<String>) -> Self {
        self.deprecation_message = Some(message.into());
        self
    }

    /// Keeps the prior state value in plans that do not replace the object (ids, creation timestamps).
    pub fn use_state_for_unknown(mut self) -> Self {
        self.use_state_for_unknown = true;
        self
    }

    /// Any change replaces the object.
    pub fn requires_replace(mut self) -> Self {
        self.requires_replace = RequiresReplace::Always;
        self
    }

    /// A change of a configured value replaces the object.
    pub fn requires_replace_if_configured(mut self) -> Self {
        self.requires_replace = RequiresReplace::IfConfigured;
        self
    }

    /// A change replaces the object when `f(prior, planned)` says so.
    pub fn requires_replace_if(
        mut self,
        f: impl Fn(&Value, &Value) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.requires_replace = RequiresReplace::If(Arc::new(f));
        self
    }

    /// Default when configuration leaves it null; makes the attribute optional + computed.
    pub fn default_value(mut self, v: Value) -> Self {
        self.default = Some(v);
        self.optional = true;
        self.computed = true;
        self
    }

    /// String default.
    pub fn default_string(self, s: impl Into<String>) -> Self {
        self.default_value(Value::from(s.into()))
    }

    /// Integer default.
    pub fn default_int(self, i: i64) -> Self {
        self.default_value(Value::from(i))
    }

    /// Bool default.
    pub fn default_bool(self, b: bool) -> Self {
        self.default_value(Value::from(b))
    }

    /// Adds a validator.
    pub fn validate(mut self, v: Validator) -> Self {
        self.validators.push(v);
        self
    }

    /// The attribute's cty type.
    pub fn value_type(&self) -> Type {
        match &self.kind {
            AttrKind::Type(t) => t.clone(),
            AttrKind::Nested(n) => {
                let obj = Type::Object(
                    n.attributes
                        .iter()
                        .map(|a| (a.name.clone(), a.value_type()))
                        .collect(),
                );
                match n.nesting {
                    ObjectNesting::Single => obj,
                    ObjectNesting::List => Type::List(Box::new(obj)),
                    ObjectNesting::Set => Type::Set(Box::new(obj)),
                    ObjectNesting::Map => Type::Map(Box::new(obj)),
                }
            }
        }
    }

    fn problems(&self, p: &str, out: &mut Vec<String>) {
        if self.description.trim().is_empty() {
            out.push(format!("{p}: attribute has no description"));
        }
        let modes = [self.required, self.optional || self.computed];
        if modes == [false, false] {
            out.push(format!("{p}: must be required, optional or computed"));
        }
        if self.required && (self.optional || self.computed) {
            out.push(format!("{p}: required excludes optional/computed"));
        }
        if self.default.is_some() && !(self.optional && self.computed) {
            out.push(format!("{p}: a default needs optional + computed"));
        }
        if self.write_only && self.computed {
            out.push(format!("{p}: write-only attributes cannot be computed"));
        }
        if self.use_state_for_unknown && !self.computed {
            out.push(format!("{p}: use_state_for_unknown needs computed"));
        }
        if let AttrKind::Nested(n) = &self.kind {
            for a in &n.attributes {
                a.problems(&format!("{p}.{}", a.name), out);
            }
        }
    }
}

/// A nested block (`name { ... }`).
#[derive(Clone, Debug)]
pub struct NestedBlock {
    /// Its name in configuration.
    pub name: String,
    /// How many times it may appear and how instances are collected.
    pub nesting: BlockNesting,
    /// Its content (with its description).
    pub block: Block,
    /// Minimum number of instances (0 = optional).
    pub min_items: i64,
    /// Maximum number of instances (0 = unlimited).
    pub max_items: i64,
    /// Any change of the block's content replaces the object.
    pub requires_replace: bool,
}

/// Nesting of a nested block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockNesting {
    /// At most one; null when absent. Model as `Option<T>`.
    Single,
    /// Ordered instances. Model as `Vec<T>`.
    List,
    /// Unordered instances. Model as `Vec<T>`.
    Set,
    /// Instances labelled by a key. Model as `BTreeMap<String, T>`.
    Map,
    /// Exactly one, never null (attributes get their own defaults). Model as `T`.
    Group,
}

impl NestedBlock {
    /// A block of the given nesting.
    pub fn new(name: impl Into<String>, nesting: BlockNesting, block: Block) -> Self {
        Self {
            name: name.into(),
            nesting,
            block,
            min_items: 0,
            max_items: 0,
            requires_replace: false,
        }
    }

    /// At most one instance (`Single` nesting, like `opnsense { ... }`).
    pub fn single(name: impl Into<String>, block: Block) -> Self {
        Self::new(name, BlockNesting::Single, block)
    }

    /// A list of instances.
    pub fn list(name: impl Into<String>, block: Block) -> Self {
        Self::new(name, BlockNesting::List, block)
    }

    /// Minimum / maximum instances (0 max = unlimited).
    pub fn items(mut self, min: i64, max: i64) -> Self {
        self.min_items = min;
        self.max_items = max;
        self
    }

    /// Any change replaces the object.
    pub fn requires_replace(mut self) -> Self {
        self.requires_replace = true;
        self
    }

    /// The cty type of the block's value.
    pub fn value_type(&self) -> Type {
        let obj = self.block.value_type();
        match self.nesting {
            BlockNesting::Single | BlockNesting::Group => obj,
            BlockNesting::List => Type::List(Box::new(obj)),
            BlockNesting::Set => Type::Set(Box::new(obj)),
            BlockNesting::Map => Type::Map(Box::new(obj)),
        }
    }
}

/// The identity schema of a managed resource: the attributes that identify the remote object.
#[derive(Clone, Debug)]
pub struct IdentitySchema {
    /// Bumped when stored identities need an upgrade.
    pub version: i64,
    /// The identity attributes.
    pub attributes: Vec<IdentityAttribute>,
}

impl IdentitySchema {
    /// Version 0, no attributes.
    pub fn new() -> Self {
        Self {
            version: 0,
            attributes: Vec::new(),
        }
    }

    /// Adds an attribute.
    pub fn attribute(mut self, a: IdentityAttribute) -> Self {
        self.attributes.push(a);
        self
    }

    /// The cty object type of identity values.
    pub fn value_type(&self) -> Type {
        Type::Object(
            self.attributes
                .iter()
                .map(|a| (a.name.clone(), a.ty.clone()))
                .collect(),
        )
    }
}

impl Default for IdentitySchema {
    fn default() -> Self {
        Self::new()
    }
}

/// One identity attribute.
#[derive(Clone, Debug)]
pub struct IdentityAttribute {
    /// Name.
    pub name: String,
    /// Type (primitive types or lists of them).
    pub ty: Type,
    /// What it means.
    pub description: String,
    /// Must be given in an `import { identity = {...} }` block.
    pub required_for_import: bool,
}

impl IdentityAttribute {
    /// A string identity attribute, required for import.
    pub fn string(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ty: Type::String,
            description: description.into(),
            required_for_import: true,
        }
    }

    /// Marks it optional for import.
    pub fn optional_for_import(mut self) -> Self {
        self.required_for_import = false;
        self
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Protobuf conversion (used by the server only).

fn type_json(t: &Type) -> Vec<u8> {
    t.to_json()
}

pub(crate) fn to_proto(schema: &Schema) -> pb::Schema {
    pb::Schema {
        version: schema.version,
        block: Some(block_to_proto(&schema.block, schema.version)),
    }
}

fn block_to_proto(b: &Block, version: i64) -> pb::schema::Block {
    pb::schema::Block {
        version,
        attributes: b.attributes.iter().map(attr_to_proto).collect(),
        block_types: b.blocks.iter().map(nested_block_to_proto).collect(),
        description: b.description.clone(),
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: b.deprecation_message.is_some(),
        deprecation_message: b.deprecation_message.clone().unwrap_or_default(),
    }
}

fn attr_to_proto(a: &Attribute) -> pb::schema::Attribute {
    let (ty, nested_type) = match &a.kind {
        AttrKind::Type(t) => (type_json(t), None),
        AttrKind::Nested(n) => (
            Vec::new(),
            Some(pb::schema::Object {
                attributes: n.attributes.iter().map(attr_to_proto).collect(),
                nesting: match n.nesting {
                    ObjectNesting::Single => pb::schema::object::NestingMode::Single,
                    ObjectNesting::List => pb::schema::object::NestingMode::List,
                    ObjectNesting::Set => pb::schema::object::NestingMode::Set,
                    ObjectNesting::Map => pb::schema::object::NestingMode::Map,
                } as i32,
                #[allow(deprecated)]
                min_items: 0,
                #[allow(deprecated)]
                max_items: 0,
            }),
        ),
    };
    pb::schema::Attribute {
        name: a.name.clone(),
        r#type: ty,
        nested_type,
        description: a.description.clone(),
        required: a.required,
        optional: a.optional,
        computed: a.computed,
        sensitive: a.sensitive,
        description_kind: pb::StringKind::Markdown as i32,
        deprecated: a.deprecation_message.is_some(),
        write_only: a.write_only,
        deprecation_message: a.deprecation_message.clone().unwrap_or_default(),
    }
}

fn nested_block_to_proto(b: &NestedBlock) -> pb::schema::NestedBlock {
    use pb::schema::nested_block::NestingMode;
    // Terraform requires min == max for single/group blocks: 1/1 when required, else 0/0.
    let (min_items, max_items) = match b.nesting {
        BlockNesting::Single | BlockNesting::Group if b.min_items > 0 => (1, 1),
        BlockNesting::Single | BlockNesting::Group => (0, 0),
        _ => (b.min_items, b.max_items),
    };
    pb::schema::NestedBlock {
        type_name: b.name.clone(),
        block: Some(block_to_proto(&b.block, 0)),
        nesting: match b.nesting {
            BlockNesting::Single => NestingMode::Single,
            BlockNesting::List => NestingMode::List,
            BlockNesting::Set => NestingMode::Set,
            BlockNesting::Map => NestingMode::Map,
            BlockNesting::Group => NestingMode::Group,
        } as i32,
        min_items,
        max_items,
    }
}

pub(crate) fn identity_to_proto(s: &IdentitySchema) -> pb::ResourceIdentitySchema {
    pb::ResourceIdentitySchema {
        version: s.version,
        identity_attributes: s
            .attributes
            .iter()
            .map(|a| pb::resource_identity_schema::IdentityAttribute {
                name: a.name.clone(),
                r#type: type_json(&a.ty),
                required_for_import: a.required_for_import,
                optional_for_import: !a.required_for_import,
                description: a.description.clone(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Schema {
        Schema::new("root")
            .version(2)
            .attribute(Attribute::string("id").computed().description("id"))
            .attribute(
                Attribute::set("tags", Type::String)
                    .optional()
                    .sensitive()
                    .description("t"),
            )
            .attribute(
                Attribute::string("wo")
                    .optional()
                    .write_only()
                    .description("w")
                    .deprecated("use x"),
            )
            .attribute(
                Attribute::nested(
                    "obj",
                    ObjectNesting::List,
                    vec![Attribute::number("n").required().description("n")],
                )
                .optional()
                .description("o"),
            )
            .block(NestedBlock::single("one", Block::new("one")).items(0, 1))
            .block(NestedBlock::single("req", Block::new("req")).items(1, 1))
            .block(
                NestedBlock::list(
                    "many",
                    Block::new("many").attribute(Attribute::bool("b").optional().description("b")),
                )
                .items(0, 3),
            )
    }

    #[test]
    fn value_type_includes_attributes_and_blocks() {
        let t = sample().value_type();
        let Type::Object(m) = t else {
            panic!("not an object")
        };
        assert_eq!(m["tags"], Type::set(Type::String));
        assert_eq!(m["obj"], Type::list(Type::object([("n", Type::Number)])));
        assert_eq!(m["one"], Type::object(Vec::<(String, Type)>::new()));
        assert_eq!(m["many"], Type::list(Type::object([("b", Type::Bool)])));
    }

    #[test]
    fn proto_form() {
        let p = to_proto(&sample());
        assert_eq!(p.version, 2);
        let b = p.block.unwrap();
        assert_eq!(b.version, 2);
        assert_eq!(b.description, "root");
        let attr = |n: &str| b.attributes.iter().find(|a| a.name == n).unwrap().clone();
        assert_eq!(attr("tags").r#type, br#"["set","string"]"#.to_vec());
        assert!(attr("tags").sensitive && attr("tags").optional && !attr("tags").computed);
        assert!(attr("id").computed);
        let wo = attr("wo");
        assert!(wo.write_only && wo.deprecated);
        assert_eq!(wo.deprecation_message, "use x");
        let obj = attr("obj");
        assert!(obj.r#type.is_empty());
        let nt = obj.nested_type.unwrap();
        assert_eq!(nt.nesting, pb::schema::object::NestingMode::List as i32);
        assert_eq!(nt.attributes[0].r#type, br#""number""#.to_vec());
        let blk = |n: &str| {
            b.block_types
                .iter()
                .find(|x| x.type_name == n)
                .unwrap()
                .clone()
        };
        use pb::schema::nested_block::NestingMode;
        assert_eq!(blk("one").nesting, NestingMode::Single as i32);
        assert_eq!(
            (blk("one").min_items, blk("one").max_items),
            (0, 0),
            "single: min == max"
        );
        assert_eq!((blk("req").min_items, blk("req").max_items), (1, 1));
        assert_eq!((blk("many").min_items, blk("many").max_items), (0, 3));
        assert_eq!(blk("many").block.unwrap().attributes[0].description, "b");
    }

    #[test]
    fn identity_proto_form() {
        let s = IdentitySchema::new()
            .attribute(IdentityAttribute::string("id", "the id"))
            .attribute(IdentityAttribute::string("region", "r").optional_for_import());
        let p = identity_to_proto(&s);
        assert_eq!(p.identity_attributes.len(), 2);
        assert!(p.identity_attributes[0].required_for_import);
        assert!(p.identity_attributes[1].optional_for_import);
        assert_eq!(p.identity_attributes[0].r#type, br#""string""#.to_vec());
    }

    #[test]
    fn validators_report_on_paths_and_skip_other_kinds() {
        let mut d = Diagnostics::new();
        let path = vec![super::super::codec::PathStep::Attr("zone".into())];
        Validator::one_of(&["a", "b"]).run(&Value::from("z"), &path, &mut d);
        Validator::one_of(&["a", "b"]).run(&Value::from("a"), &path, &mut d);
        Validator::int_between(1, 10).run(&Value::from(11), &path, &mut d);
        Validator::int_between(1, 10).run(&Value::from(5), &path, &mut d);
        assert_eq!(d.len(), 2);
        assert!(d.iter().all(|x| x.path.as_ref() == Some(&path)));
        assert!(d.iter().next().unwrap().detail.contains("\"a\", \"b\""));
    }
}
