//! `homelab_opnsense_hasync`: System › High Availability › Settings on the primary firewall (a singleton): the peer
//! the configuration is synced to, the HA user's password, and which sections are synced (HAProxy, aliases,
//! rules, virtual IPs, …).
//!
//! The password comes in the two forms every secret here has: `password` in state (sensitive; Terraform 1.0.3) or
//! `password_wo` + `password_wo_version` (Terraform >= 1.11, the framework's write-only machinery): then it is never
//! read back. Destroying the resource clears the peer and the synced sections, which stops the sync.

use serde::{Deserialize, Serialize};

use super::opnsense_common::*;
use crate::framework::*;
use crate::opnsense::hasync::HaSync;
use crate::opnsense::{Client, Error};

pub const TYPE: &str = "homelab_opnsense_hasync";
const ID: &str = "hasync";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HaSyncModel {
    pub id: Tf<String>,
    pub peer: Tf<String>,
    pub username: Tf<String>,
    pub password: Tf<String>,
    #[serde(default)]
    pub password_wo: Tf<String>,
    #[serde(default)]
    pub password_wo_version: Tf<i64>,
    pub sync_items: StrSet,
    pub disable_preempt: Tf<bool>,
    pub pfsync_interface: Tf<String>,
    pub pfsync_peer: Tf<String>,
    #[serde(default)]
    pub secondary_haproxy_current: Tf<bool>,
}

fn to_hasync(m: &HaSyncModel) -> HaSync {
    HaSync {
        peer: m.peer.known().cloned().unwrap_or_default(),
        username: opt_str(&m.username),
        password: opt_str(&m.password).or_else(|| opt_str(&m.password_wo)),
        items: set_known(&m.sync_items).unwrap_or_default(),
        disable_preempt: m.disable_preempt.known().copied().unwrap_or(false),
        pfsync_interface: opt_str(&m.pfsync_interface),
        pfsync_peer: opt_str(&m.pfsync_peer),
    }
}

fn from_hasync(s: &HaSync, prior: Option<&HaSyncModel>) -> HaSyncModel {
    let write_only = prior.is_some_and(|p| uses_write_only(&p.password, &p.password_wo_version));
    HaSyncModel {
        id: Tf::Known(ID.into()),
        peer: Tf::Known(s.peer.clone()),
        username: tf_opt(s.username.clone()),
        password: if write_only {
            Tf::Null
        } else {
            tf_opt(s.password.clone())
        },
        password_wo: Tf::Null,
        password_wo_version: prior.map_or(Tf::Null, |p| p.password_wo_version),
        sync_items: keep_set_spelling(prior.map(|p| &p.sync_items), s.items.clone()),
        disable_preempt: Tf::Known(s.disable_preempt),
        pfsync_interface: tf_opt(s.pfsync_interface.clone()),
        pfsync_peer: tf_opt(s.pfsync_peer.clone()),
        secondary_haproxy_current: prior.map_or(Tf::Null, |p| p.secondary_haproxy_current),
    }
}

pub fn schema() -> Schema {
    Schema::new(
        "The HA sync settings of the primary OPNsense (System › High Availability › Settings; a singleton: declare \
         it once, on the primary). Names the peer the configuration is copied to, the HA user, and the synced \
         sections. Destroying it clears the peer and the sections, which stops the sync.",
    )
    .attribute(
        Attribute::string("id")
            .computed()
            .use_state_for_unknown()
            .description("Always `hasync` (there is one set of HA settings)."),
    )
    .attribute(
        Attribute::string("peer")
            .required()
            .validate(Validator::not_empty())
            .description(
                "`Synchronize Config to IP`: the secondary's address or web GUI URL (e.g. `https://10.0.9.2`), \
                 where OPNsense sends the synced sections.",
            ),
    )
    .attribute(
        Attribute::string("username")
            .optional()
            .description("The user on the secondary that accepts the sync (OPNsense uses `root` when unset)."),
    )
    .attribute(
        Attribute::string("password")
            .optional()
            .sensitive()
            .description(
                "That user's password, kept in state (sensitive): the Terraform 1.0.3 path. Read back, so a change \
                 made on the firewall shows in the plan. Set exactly one of `password` and `password_wo`.",
            ),
    )
    .attribute(
        Attribute::string("password_wo")
            .optional()
            .sensitive()
            .write_only()
            .validate(Validator::not_empty())
            .description(
                "That user's password, write-only (Terraform 1.11 or newer): sent to the firewall, never stored in \
                 plan or state and never read back. Set `password_wo_version` with it.",
            ),
    )
    .attribute(Attribute::number("password_wo_version").optional().description(
        "Required with `password_wo`: a change of this number is what sends `password_wo` again.",
    ))
    .attribute(
        Attribute::set("sync_items", Type::String)
            .required()
            .description(
                "What is synced, by OPNsense's ids: `haproxy` (the HAProxy plugin's `OPNsense.HAProxy`), `aliases`, \
                 `rules`, `virtualip` (CARP VIPs only, sent with advskew + 100), and any other id the firewall \
                 offers.",
            ),
    )
    .attribute(
        Attribute::bool("disable_preempt")
            .default_bool(false)
            .description("Disable CARP preemption (`net.inet.carp.preempt`); keep it false for a pair."),
    )
    .attribute(
        Attribute::string("pfsync_interface")
            .optional()
            .description("Interface key pfsync uses to share connection states (unset: pfsync off)."),
    )
    .attribute(
        Attribute::string("pfsync_peer")
            .optional()
            .description("The peer's address on the pfsync interface (unset: multicast)."),
    )
    .attribute(Attribute::bool("secondary_haproxy_current").computed().description(
        "With the provider's `secondary` block: whether the secondary's haproxy runs the configuration saved on it \
         (checked on refresh: a configtest there, then os-haproxy's `export/diff`; a disabled HAProxy counts as \
         current). False after a sync that arrived but was not applied (opnsense/core #7498), or after the \
         secondary's step of a batch failed: the plan then changes it to true, and applying that syncs the primary's \
         HAProxy sections to the secondary and configtests and reconfigures it. Null without a `secondary` block.",
    ))
}

/// Where the secondary's haproxy does not run its saved configuration, makes it (sync, configtest, reconfigure) and
/// checks again. `Null` without a secondary.
async fn make_secondary_current(c: &Client) -> Result<Tf<bool>, Diagnostics> {
    let check =
        |r: Option<Result<Result<(), String>, Error>>| -> Result<Option<String>, Diagnostics> {
            match r {
                None => Ok(None),
                Some(Ok(Ok(()))) => Ok(None),
                Some(Ok(Err(why))) => Ok(Some(why)),
                Some(Err(e)) => Err(diags(e, "Could not check HAProxy on the HA secondary")),
            }
        };
    let Some(first) = c.secondary_haproxy_current().await else {
        return Ok(Tf::Null);
    };
    if check(Some(first))?.is_none() {
        return Ok(Tf::Known(true));
    }
    if let Some(Err(e)) = c.deploy_secondary().await {
        return Err(diags(e, "Could not deploy HAProxy on the HA secondary"));
    }
    match check(c.secondary_haproxy_current().await)? {
        None => Ok(Tf::Known(true)),
        Some(why) => Err(Diagnostic::error(
            "HAProxy on the HA secondary still does not run its saved configuration",
            format!(
                "After a sync, configtest and reconfigure on the secondary: {why}. Check the secondary's HAProxy \
                 (Services › HAProxy › Settings, its log) and apply again."
            ),
        )
        .at(attr("secondary_haproxy_current"))
        .into()),
    }
}

pub struct HaSyncResource;

async fn write(ctx: &Context, plan: HaSyncModel) -> Result<HaSyncModel, Diagnostics> {
    let c = client(ctx)?;
    let s = to_hasync(&plan);
    c.hasync()
        .put(&s)
        .await
        .map_err(|e| diags(e, "Could not apply the HA sync settings"))?;
    let mut m = from_hasync(&s, Some(&plan));
    m.secondary_haproxy_current = make_secondary_current(&c).await?;
    Ok(m)
}

#[async_trait]
impl Resource for HaSyncResource {
    type Model = HaSyncModel;
    type Identity = UuidIdentity;

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(IdentitySchema::new().attribute(IdentityAttribute::string("id", "Always `hasync`.")))
    }
    fn identity(&self, state: &HaSyncModel) -> Option<UuidIdentity> {
        state.id.known().map(|id| UuidIdentity { id: id.clone() })
    }
    fn validate(&self, config: &HaSyncModel, diags: &mut Diagnostics) {
        check_secret_choice(
            SecretPair {
                plain: ("password", &config.password),
                write_only: ("password_wo", &config.password_wo),
                version: ("password_wo_version", &config.password_wo_version),
            },
            true,
            "The HA sync needs the peer's password",
            diags,
        );
    }
    /// With a secondary the planned `secondary_haproxy_current` is true: a refreshed false becomes an update that
    /// makes it so.
    async fn modify_plan(
        &self,
        ctx: &Context,
        plan: &mut Plan<HaSyncModel>,
    ) -> Result<(), Diagnostics> {
        plan.planned.secondary_haproxy_current = match client_if_ready(ctx) {
            Some(c) if c.secondary().is_some() => Tf::Known(true),
            Some(_) => Tf::Null,
            None => Tf::Unknown,
        };
        Ok(())
    }
    async fn create(&self, ctx: &Context, plan: HaSyncModel) -> Result<HaSyncModel, Diagnostics> {
        write(ctx, plan).await
    }
    async fn read(
        &self,
        ctx: &Context,
        state: HaSyncModel,
    ) -> Result<Option<HaSyncModel>, Diagnostics> {
        let c = client(ctx)?;
        let s = c
            .hasync()
            .get()
            .await
            .map_err(|e| diags(e, "Could not read the HA sync settings"))?;
        let mut m = from_hasync(&s, Some(&state));
        m.secondary_haproxy_current = match c.secondary_haproxy_current().await {
            None => Tf::Null,
            Some(Ok(Ok(()))) => Tf::Known(true),
            Some(Ok(Err(why))) => {
                ctx.warn_at(
                    attr("secondary_haproxy_current"),
                    "HAProxy on the HA secondary does not run its saved configuration",
                    format!(
                        "On the secondary firewall, {why}. The plan sets secondary_haproxy_current back to true; \
                         applying it syncs the primary's HAProxy sections there and configtests and reconfigures \
                         the secondary."
                    ),
                );
                Tf::Known(false)
            }
            // Unreadable now: keep what state says (the HAProxy objects' refresh reports the secondary's faults).
            Some(Err(e)) => {
                ctx.warn(
                    "Could not check HAProxy on the HA secondary",
                    format!("{e}"),
                );
                state.secondary_haproxy_current
            }
        };
        Ok(Some(m))
    }
    async fn update(
        &self,
        ctx: &Context,
        _prior: HaSyncModel,
        plan: HaSyncModel,
    ) -> Result<HaSyncModel, Diagnostics> {
        write(ctx, plan).await
    }
    async fn delete(&self, ctx: &Context, _state: HaSyncModel) -> Result<(), Diagnostics> {
        let c = client(ctx)?;
        c.hasync()
            .put(&HaSync::default())
            .await
            .map_err(|e| diags(e, "Could not clear the HA sync settings"))
    }
    async fn import(&self, _ctx: &Context, _id: &str) -> Result<HaSyncModel, Diagnostics> {
        Ok(HaSyncModel {
            id: Tf::Known(ID.into()),
            ..Default::default()
        })
    }
    async fn import_identity(
        &self,
        ctx: &Context,
        identity: UuidIdentity,
    ) -> Result<HaSyncModel, Diagnostics> {
        self.import(ctx, &identity.id).await
    }
}

pub fn register(r: &mut Registry) {
    r.resource(HaSyncResource);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;
    use std::collections::BTreeSet;

    #[test]
    fn round_trip_and_the_write_only_password_stays_out() {
        let s = HaSync {
            peer: "http://10.0.9.2".into(),
            username: Some("hasync".into()),
            password: Some("pw".into()),
            items: BTreeSet::from(["haproxy".to_string(), "virtualip".to_string()]),
            ..HaSync::default()
        };
        let m = from_hasync(&s, None);
        assert_eq!(to_hasync(&m), s);
        let v = codec::to_value(&m, &schema().value_type()).unwrap();
        assert_eq!(codec::from_value::<HaSyncModel>(&v).unwrap(), m);
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
        let wo = HaSyncModel {
            password: Tf::Null,
            password_wo_version: Tf::Known(1),
            ..m
        };
        assert_eq!(from_hasync(&s, Some(&wo)).password, Tf::Null);
    }
}
