//! `homelab_test_fixture`: a resource, data source and list resource that exercise every framework feature
//! without any backend. Only built with the `test-fixtures` feature; the foundation's acceptance tests drive it
//! through real Terraform.
//!
//! Objects live in a JSON file (`store_path`, else `$HOMELAB_TEST_FIXTURE_STORE`), so tests can inspect them,
//! delete or change them out of band (drift), and import them. It behaves like a well-made resource:
//!
//! | attribute | exercises |
//! |---|---|
//! | `id` | computed, use-state-for-unknown, identity |
//! | `name` | required string, validator |
//! | `description` | optional + computed with a default |
//! | `secret` | sensitive |
//! | `zone` | requires replace |
//! | `size` | number (floats and integers) |
//! | `tags` | set of strings |
//! | `revision` | computed, unknown whenever the object changes |
//! | `apply_delay_ms` | slow create/update to test Ctrl-C (`StopProvider`) and timeouts |
//! | `settings { port, protocol, generated }` | nested block with a default and a computed value |
//! | `timeouts { create, ... }` | per-resource timeouts |
//!
//! `name = "__panic__"` makes create panic, to test how Terraform reports a crashing provider.
//!
//! Import IDs: `<id>` (store from the environment) or `<store_path>|<id>`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::framework::*;

/// The type name of the resource, data source and list resource.
pub const TYPE_NAME: &str = "homelab_test_fixture";
/// Environment variable naming the store file when `store_path` is not set.
pub const STORE_ENV: &str = "HOMELAB_TEST_FIXTURE_STORE";

/// A `name` that makes create panic (to test how a crashing provider is reported).
pub const PANIC_NAME: &str = "__panic__";

/// Registers the resource, data source and list resource.
pub fn register(r: &mut Registry) {
    r.resource(Fixture)
        .data_source(FixtureData)
        .list_resource(FixtureList);
}

// ---------------------------------------------------------------------------------------------------------------
// Store

/// One stored object (what the fake "remote system" holds).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredObject {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Secret (plaintext in the store, like any remote system would keep it).
    #[serde(default)]
    pub secret: Option<String>,
    /// Zone.
    #[serde(default)]
    pub zone: Option<String>,
    /// Size.
    #[serde(default)]
    pub size: Option<f64>,
    /// Tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Settings block.
    #[serde(default)]
    pub settings: Option<StoredSettings>,
    /// Incremented on every write.
    pub revision: i64,
}

/// Stored settings block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredSettings {
    /// Port.
    pub port: Option<i64>,
    /// Protocol.
    pub protocol: String,
    /// Generated value.
    pub generated: String,
}

/// The whole store file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StoreFile {
    /// Objects by id.
    pub objects: BTreeMap<String, StoredObject>,
}

static STORE_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn store_path(attr_value: &Tf<String>) -> Result<PathBuf, Diagnostics> {
    if let Some(p) = attr_value.known() {
        return Ok(PathBuf::from(p));
    }
    std::env::var(STORE_ENV)
        .ok()
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| {
            Diagnostic::error(
                "No fixture store",
                format!("Set `store_path` or the {STORE_ENV} environment variable."),
            )
            .at(attr("store_path"))
            .into()
        })
}

/// Reads the store (a missing file is an empty store).
pub fn load(path: &Path) -> Result<StoreFile, Diagnostics> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).or_diag("Fixture store is corrupt"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(StoreFile::default()),
        Err(e) => Err(Diagnostic::error("Cannot read the fixture store", e.to_string()).into()),
    }
}

fn save(path: &Path, store: &StoreFile) -> Result<(), Diagnostics> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let body = serde_json::to_vec_pretty(store).or_diag("Cannot encode the fixture store")?;
    std::fs::write(&tmp, body).or_diag("Cannot write the fixture store")?;
    std::fs::rename(&tmp, path).or_diag("Cannot write the fixture store")
}

// ---------------------------------------------------------------------------------------------------------------
// Resource

/// The `settings` block.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// Port.
    pub port: Tf<i64>,
    /// Protocol (default "tcp").
    pub protocol: Tf<String>,
    /// Generated on create.
    pub generated: Tf<String>,
}

/// The resource model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FixtureModel {
    /// Id.
    pub id: Tf<String>,
    /// Store file.
    pub store_path: Tf<String>,
    /// Name.
    pub name: Tf<String>,
    /// Description.
    pub description: Tf<String>,
    /// Secret.
    pub secret: Tf<String>,
    /// Zone.
    pub zone: Tf<String>,
    /// Size.
    pub size: Tf<f64>,
    /// Tags.
    pub tags: Tf<Vec<String>>,
    /// Revision.
    pub revision: Tf<i64>,
    /// Artificial delay.
    pub apply_delay_ms: Tf<i64>,
    /// Settings block.
    pub settings: Option<Settings>,
    /// Timeouts.
    pub timeouts: Option<TimeoutsModel>,
}

/// The identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixtureIdentity {
    /// Object id.
    pub id: String,
}

/// The resource.
pub struct Fixture;

fn resource_schema() -> Schema {
    Schema::new(
        "A test object stored in a local JSON file. Exists only in test builds of the provider.",
    )
    .attribute(
        Attribute::string("id")
            .computed()
            .use_state_for_unknown()
            .description("Identifier assigned on create."),
    )
    .attribute(
        Attribute::string("store_path")
            .optional()
            .requires_replace()
            .description(format!(
                "Path of the JSON file holding the objects. Default: `${STORE_ENV}`."
            )),
    )
    .attribute(
        Attribute::string("name")
            .required()
            .validate(Validator::not_empty())
            .validate(Validator::string("without spaces", |s| {
                if s.contains(' ') {
                    Err("Remove the spaces from the name.".into())
                } else {
                    Ok(())
                }
            }))
            .description("Name of the object."),
    )
    .attribute(
        Attribute::string("description")
            .default_string("managed by terraform")
            .description("Free text. Default `\"managed by terraform\"`."),
    )
    .attribute(
        Attribute::string("secret")
            .optional()
            .sensitive()
            .description("A secret stored with the object; never shown or logged."),
    )
    .attribute(
        Attribute::string("zone")
            .optional()
            .requires_replace()
            .validate(Validator::one_of(&["a", "b", "c"]))
            .description("Placement zone; changing it replaces the object."),
    )
    .attribute(
        Attribute::number("size")
            .optional()
            .description("A number (integer or fraction)."),
    )
    .attribute(
        Attribute::set("tags", Type::String)
            .optional()
            .description("A set of tags."),
    )
    .attribute(
        Attribute::number("revision")
            .computed()
            .description("Incremented by the store on every write."),
    )
    .attribute(
        Attribute::number("apply_delay_ms")
            .optional()
            .validate(Validator::int_between(0, 3_600_000))
            .description(
                "Sleep this long during create and update (to test interrupts and timeouts).",
            ),
    )
    .block(
        NestedBlock::single(
            "settings",
            Block::new("Connection settings of the object.")
                .attribute(
                    Attribute::number("port")
                        .optional()
                        .validate(Validator::int_between(1, 65535))
                        .description("A port from 1 to 65535."),
                )
                .attribute(
                    Attribute::string("protocol")
                        .default_string("tcp")
                        .validate(Validator::one_of(&["tcp", "udp"]))
                        .description("`tcp` (default) or `udp`."),
                )
                .attribute(
                    Attribute::string("generated")
                        .computed()
                        .description("Generated by the store when the settings change."),
                ),
        )
        .items(0, 1),
    )
    .block(timeouts_block())
}

impl FixtureModel {
    fn to_stored(&self, revision: i64, old_generated: Option<&str>) -> StoredObject {
        StoredObject {
            name: self.name.known().cloned().unwrap_or_default(),
            description: self
                .description
                .known()
                .cloned()
                .unwrap_or_else(|| "managed by terraform".into()),
            secret: self.secret.known().cloned(),
            zone: self.zone.known().cloned(),
            size: self.size.known().copied(),
            tags: self.tags.known().cloned(),
            settings: self.settings.as_ref().map(|s| StoredSettings {
                port: s.port.known().copied(),
                protocol: s.protocol.known().cloned().unwrap_or_else(|| "tcp".into()),
                generated: old_generated
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("gen-{}", revision)),
            }),
            revision,
        }
    }

    /// The model for a stored object, keeping the caller's non-remote attributes.
    fn from_stored(id: &str, o: &StoredObject, keep: &FixtureModel) -> FixtureModel {
        FixtureModel {
            id: Tf::Known(id.to_string()),
            store_path: keep.store_path.clone(),
            name: Tf::Known(o.name.clone()),
            description: Tf::Known(o.description.clone()),
            secret: o.secret.clone().into(),
            zone: o.zone.clone().into(),
            size: o.size.into(),
            tags: o
                .tags
                .clone()
                .map(|mut t| {
                    t.sort();
                    t.dedup();
                    t
                })
                .into(),
            revision: Tf::Known(o.revision),
            apply_delay_ms: keep.apply_delay_ms.or_null(),
            settings: o.settings.as_ref().map(|s| Settings {
                port: s.port.into(),
                protocol: Tf::Known(s.protocol.clone()),
                generated: Tf::Known(s.generated.clone()),
            }),
            timeouts: keep.timeouts.clone(),
        }
    }
}

async fn delay(ctx: &Context, m: &FixtureModel) -> Result<(), Diagnostics> {
    let Some(ms) = m.apply_delay_ms.known().copied().filter(|ms| *ms > 0) else {
        return Ok(());
    };
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_millis(ms as u64)) => Ok(()),
        _ = ctx.cancellation().cancelled() => Err(Diagnostic::error(
            "Interrupted",
            "The operation was interrupted before the object was written.",
        ).into()),
    }
}

fn split_import_id(id: &str) -> (Tf<String>, String) {
    match id.rsplit_once('|') {
        Some((store, id)) => (Tf::Known(store.to_string()), id.to_string()),
        None => (Tf::Null, id.to_string()),
    }
}

#[async_trait]
impl Resource for Fixture {
    type Model = FixtureModel;
    type Identity = FixtureIdentity;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        resource_schema()
    }

    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema::new().attribute(IdentityAttribute::string("id", "The object id.")))
    }

    fn identity(&self, state: &FixtureModel) -> Option<FixtureIdentity> {
        state
            .id
            .known()
            .map(|id| FixtureIdentity { id: id.clone() })
    }

    fn validate(&self, config: &FixtureModel, diags: &mut Diagnostics) {
        if let (Some(size), Some(zone)) = (config.size.known(), config.zone.known()) {
            if zone == "c" && *size > 100.0 {
                diags.error_at(
                    attr("size"),
                    "Size too large for zone c",
                    "Zone \"c\" holds objects up to size 100. Use a smaller size or another zone.",
                );
            }
        }
    }

    async fn modify_plan(
        &self,
        _ctx: &Context,
        plan: &mut Plan<FixtureModel>,
    ) -> Result<(), Diagnostics> {
        // Custom replacement rule: shrinking `size` replaces the object, growing it is in place.
        if let (Some(prior), Some(new)) = (
            plan.prior.as_ref().and_then(|p| p.size.known().copied()),
            plan.planned.size.known().copied(),
        ) {
            if new < prior {
                plan.require_replace(attr("size"));
                plan.planned.id = Tf::Unknown;
            }
        }
        Ok(())
    }

    async fn create(&self, ctx: &Context, plan: FixtureModel) -> Result<FixtureModel, Diagnostics> {
        if plan.name.known().map(String::as_str) == Some(PANIC_NAME) {
            panic!("the test fixture was asked to panic");
        }
        delay(ctx, &plan).await?;
        let path = store_path(&plan.store_path)?;
        let _g = STORE_LOCK.lock().await;
        let mut store = load(&path)?;
        let id = format!("fx-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let obj = plan.to_stored(1, None);
        store.objects.insert(id.clone(), obj.clone());
        save(&path, &store)?;
        tracing::debug!(tf_resource_type = TYPE_NAME, id = %id, "created");
        Ok(FixtureModel::from_stored(&id, &obj, &plan))
    }

    async fn read(
        &self,
        _ctx: &Context,
        state: FixtureModel,
    ) -> Result<Option<FixtureModel>, Diagnostics> {
        let path = store_path(&state.store_path)?;
        let Some(id) = state.id.known().cloned() else {
            return Ok(None);
        };
        let _g = STORE_LOCK.lock().await;
        let store = load(&path)?;
        Ok(store
            .objects
            .get(&id)
            .map(|o| FixtureModel::from_stored(&id, o, &state)))
    }

    async fn update(
        &self,
        ctx: &Context,
        prior: FixtureModel,
        plan: FixtureModel,
    ) -> Result<FixtureModel, Diagnostics> {
        delay(ctx, &plan).await?;
        let path = store_path(&plan.store_path)?;
        let id = prior.id.known().cloned().ok_or_else(|| {
            Diagnostics::from(Diagnostic::error(
                "Missing id",
                "The prior state has no id.",
            ))
        })?;
        let _g = STORE_LOCK.lock().await;
        let mut store = load(&path)?;
        let Some(old) = store.objects.get(&id).cloned() else {
            return Err(Diagnostic::error(
                "Object disappeared",
                format!("The object {id} was deleted outside Terraform during the apply. Run apply again to recreate it."),
            )
            .into());
        };
        let settings_same = old.settings.as_ref().map(|s| (s.port, s.protocol.clone()))
            == plan.settings.as_ref().map(|s| {
                (
                    s.port.known().copied(),
                    s.protocol.known().cloned().unwrap_or_else(|| "tcp".into()),
                )
            });
        let keep_gen = if settings_same {
            old.settings.as_ref().map(|s| s.generated.clone())
        } else {
            None
        };
        let obj = plan.to_stored(old.revision + 1, keep_gen.as_deref());
        store.objects.insert(id.clone(), obj.clone());
        save(&path, &store)?;
        Ok(FixtureModel::from_stored(&id, &obj, &plan))
    }

    async fn delete(&self, _ctx: &Context, state: FixtureModel) -> Result<(), Diagnostics> {
        let path = store_path(&state.store_path)?;
        let Some(id) = state.id.known().cloned() else {
            return Ok(());
        };
        let _g = STORE_LOCK.lock().await;
        let mut store = load(&path)?;
        if store.objects.remove(&id).is_some() {
            save(&path, &store)?;
        }
        Ok(())
    }

    async fn import(&self, _ctx: &Context, id: &str) -> Result<FixtureModel, Diagnostics> {
        let (store_path_attr, id) = split_import_id(id);
        if id.is_empty() {
            return Err(Diagnostic::error(
                "Invalid import ID",
                "Use the object id (`fx-...`), or `<store_path>|<id>`.",
            )
            .into());
        }
        let path = store_path(&store_path_attr)?;
        let _g = STORE_LOCK.lock().await;
        let store = load(&path)?;
        if !store.objects.contains_key(&id) {
            return Err(Diagnostic::error(
                "Cannot import non-existent object",
                format!("No object with id {id:?} exists in the fixture store."),
            )
            .into());
        }
        Ok(FixtureModel {
            id: Tf::Known(id),
            store_path: store_path_attr,
            ..Default::default()
        })
    }

    async fn import_identity(
        &self,
        ctx: &Context,
        identity: FixtureIdentity,
    ) -> Result<FixtureModel, Diagnostics> {
        self.import(ctx, &identity.id).await
    }

    fn timeouts(&self, model: &FixtureModel) -> Timeouts {
        Timeouts::from_model(Timeouts::default(), model.timeouts.as_ref())
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Data source

/// Data source model: look an object up by id.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FixtureDataModel {
    /// Id to look up.
    pub id: Tf<String>,
    /// Store file.
    pub store_path: Tf<String>,
    /// Name.
    pub name: Tf<String>,
    /// Description.
    pub description: Tf<String>,
    /// Zone.
    pub zone: Tf<String>,
    /// Size.
    pub size: Tf<f64>,
    /// Tags.
    pub tags: Tf<Vec<String>>,
}

/// The data source.
pub struct FixtureData;

#[async_trait]
impl DataSource for FixtureData {
    type Model = FixtureDataModel;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new("Looks up a test object by id.")
            .attribute(Attribute::string("id").required().description("Object id."))
            .attribute(
                Attribute::string("store_path")
                    .optional()
                    .description(format!("Store file. Default: `${STORE_ENV}`.")),
            )
            .attribute(Attribute::string("name").computed().description("Name."))
            .attribute(
                Attribute::string("description")
                    .computed()
                    .description("Description."),
            )
            .attribute(Attribute::string("zone").computed().description("Zone."))
            .attribute(Attribute::number("size").computed().description("Size."))
            .attribute(
                Attribute::set("tags", Type::String)
                    .computed()
                    .description("Tags."),
            )
    }

    async fn read(
        &self,
        _ctx: &Context,
        config: FixtureDataModel,
    ) -> Result<FixtureDataModel, Diagnostics> {
        let path = store_path(&config.store_path)?;
        let id = config.id.known().cloned().unwrap_or_default();
        let _g = STORE_LOCK.lock().await;
        let store = load(&path)?;
        let o = store.objects.get(&id).ok_or_else(|| {
            Diagnostics::from(
                Diagnostic::error(
                    "Object not found",
                    format!("No object with id {id:?} exists."),
                )
                .at(attr("id")),
            )
        })?;
        Ok(FixtureDataModel {
            id: config.id,
            store_path: config.store_path,
            name: Tf::Known(o.name.clone()),
            description: Tf::Known(o.description.clone()),
            zone: o.zone.clone().into(),
            size: o.size.into(),
            tags: o.tags.clone().into(),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------------
// List resource

/// `list "homelab_test_fixture" { config { ... } }`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FixtureListConfig {
    /// Store file.
    pub store_path: Tf<String>,
    /// Only names starting with this.
    pub name_prefix: Tf<String>,
}

/// The list resource.
pub struct FixtureList;

#[async_trait]
impl ListResource for FixtureList {
    type Resource = Fixture;
    type Config = FixtureListConfig;

    fn type_name(&self) -> &'static str {
        TYPE_NAME
    }

    fn schema(&self) -> Schema {
        Schema::new("Lists the test objects in a store.")
            .attribute(
                Attribute::string("store_path")
                    .optional()
                    .description(format!("Store file. Default: `${STORE_ENV}`.")),
            )
            .attribute(
                Attribute::string("name_prefix")
                    .optional()
                    .description("Only list objects whose name starts with this."),
            )
    }

    async fn list(
        &self,
        _ctx: &Context,
        config: FixtureListConfig,
        req: ListRequest,
    ) -> Result<ListStream<Fixture>, Diagnostics> {
        let path = store_path(&config.store_path)?;
        let store = {
            let _g = STORE_LOCK.lock().await;
            load(&path)?
        };
        let prefix = config.name_prefix.known().cloned().unwrap_or_default();
        let keep = FixtureModel {
            store_path: config.store_path.clone(),
            ..Default::default()
        };
        let items: Vec<_> = store
            .objects
            .iter()
            .filter(|(_, o)| o.name.starts_with(&prefix))
            .map(|(id, o)| {
                Ok(ListItem {
                    identity: FixtureIdentity { id: id.clone() },
                    display_name: o.name.clone(),
                    object: req
                        .include_resource_object
                        .then(|| FixtureModel::from_stored(id, o, &keep)),
                })
            })
            .collect();
        Ok(futures::stream::iter(items).boxed())
    }
}

use futures::StreamExt as _;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_is_sound() {
        assert_eq!(resource_schema().problems(), Vec::<String>::new());
    }

    use crate::framework::adapter::ResourceAdapter;
    use crate::plugin::codec::{to_value, PathStep, Value};
    use crate::plugin::service::{ErasedResource, ImportFrom};

    fn config_value(r: &ResourceAdapter<Fixture>, store: &str, zone: &str) -> Value {
        let m = FixtureModel {
            store_path: Tf::Known(store.into()),
            name: Tf::Known("n1".into()),
            secret: Tf::Known("s3cr3t".into()),
            zone: Tf::Known(zone.into()),
            size: Tf::Known(2.5),
            tags: Tf::Known(vec!["b".into(), "a".into()]),
            settings: Some(Settings {
                port: Tf::Known(80),
                ..Default::default()
            }),
            ..Default::default()
        };
        to_value(&m, r.value_type()).unwrap()
    }

    #[tokio::test]
    async fn lifecycle_through_the_adapter() {
        let dir = std::env::temp_dir().join(format!("fx-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = dir.join("store.json").display().to_string();
        let r = ResourceAdapter::new(Fixture);
        let ctx = Context::new(None, CancellationToken::new());
        let cfg = config_value(&r, &store, "a");

        // Create plan: computed unknown, defaults filled, validators clean.
        assert!(r.validate(&cfg).is_empty());
        let (p, d) = r.plan(&ctx, &Value::Null, &cfg, &cfg).await;
        assert!(!d.has_errors(), "{d}");
        let planned = p.unwrap().planned;
        assert_eq!(planned.get("id"), Some(&Value::Unknown));
        assert_eq!(
            planned.get("description"),
            Some(&Value::from("managed by terraform"))
        );
        assert_eq!(
            planned.get("settings").unwrap().get("protocol"),
            Some(&Value::from("tcp"))
        );

        // Apply: wholly known state, identity.
        let (out, d) = r.apply(&ctx, &Value::Null, &planned).await;
        assert!(!d.has_errors(), "{d}");
        let (state, identity) = out.unwrap();
        assert!(state.is_wholly_known());
        let id = state.get("id").unwrap().as_str().unwrap().to_string();
        assert_eq!(
            identity.unwrap().get("id").and_then(Value::as_str),
            Some(id.as_str())
        );

        // Read back: identical. No-change plan: identical, no replacement.
        let (out, _) = r.read(&ctx, &state).await;
        assert_eq!(out.unwrap().0, state);
        let (p, _) = r.plan(&ctx, &state, &state, &cfg).await;
        let p = p.unwrap();
        assert_eq!(p.planned, state);
        assert!(p.requires_replace.is_empty());

        // Zone change replaces.
        let cfg_b = config_value(&r, &store, "b");
        let mut proposed = cfg_b.clone();
        if let (Value::Object(m), Value::Object(s)) = (&mut proposed, &state) {
            for k in ["id", "revision", "description"] {
                m.insert(k.into(), s[k].clone());
            }
            m.insert("settings".into(), s["settings"].clone());
        }
        let (p, _) = r.plan(&ctx, &state, &proposed, &cfg_b).await;
        let p = p.unwrap();
        assert_eq!(
            p.requires_replace,
            vec![vec![PathStep::Attr("zone".into())]]
        );
        assert_eq!(p.planned.get("id"), Some(&Value::Unknown));

        // Invalid zone: diagnostic on the attribute.
        let bad = config_value(&r, &store, "zz");
        let d = r.validate(&bad);
        assert_eq!(
            d.iter().next().unwrap().path,
            Some(vec![PathStep::Attr("zone".into())])
        );

        // Import by id and by identity, then delete; a second read says gone.
        let (out, d) = r
            .import(&ctx, ImportFrom::Id(format!("{store}|{id}")))
            .await;
        assert!(!d.has_errors(), "{d}");
        assert_eq!(
            out.unwrap().0.get("id").and_then(Value::as_str),
            Some(id.as_str())
        );
        let ident = Value::object([("id", Value::from(id.as_str()))]);
        std::env::set_var(STORE_ENV, &store);
        let (out, d) = r.import(&ctx, ImportFrom::Identity(ident)).await;
        assert!(!d.has_errors(), "{d}");
        assert!(out.is_some());
        let (out, d) = r.apply(&ctx, &state, &Value::Null).await;
        assert!(!d.has_errors(), "{d}");
        assert_eq!(out.unwrap().0, Value::Null);
        let (out, _) = r.read(&ctx, &state).await;
        assert_eq!(out.unwrap().0, Value::Null);
        let secret_in_debug = format!("{d:?}");
        assert!(!secret_in_debug.contains("s3cr3t"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn cancellation_interrupts_a_slow_create() {
        let r = ResourceAdapter::new(Fixture);
        let token = CancellationToken::new();
        let ctx = Context::new(None, token.clone());
        let mut m = FixtureModel {
            store_path: Tf::Known("/nonexistent/never-written.json".into()),
            name: Tf::Known("slow".into()),
            apply_delay_ms: Tf::Known(60_000),
            ..Default::default()
        };
        m.id = Tf::Unknown;
        let planned = to_value(&m, r.value_type()).unwrap();
        let t = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            t.cancel();
        });
        let started = std::time::Instant::now();
        let (out, d) = r.apply(&ctx, &Value::Null, &planned).await;
        assert!(out.is_none());
        assert!(d.has_errors());
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn import_ids() {
        assert_eq!(split_import_id("fx-1"), (Tf::Null, "fx-1".to_string()));
        assert_eq!(
            split_import_id("/tmp/s.json|fx-1"),
            (Tf::Known("/tmp/s.json".into()), "fx-1".to_string())
        );
    }
}
