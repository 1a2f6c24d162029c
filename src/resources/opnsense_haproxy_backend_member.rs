//! `homelab_opnsense_haproxy_backend_member`: one server in one backend's pool, as its own resource.
//!
//! Why it exists: a backend lists its servers in one field (`linkedServers`), so with `servers` on the backend the
//! pool can only be written once every member exists. Terraform orders by resource block, not by instance: a backend
//! whose `servers` come from a `for_each` waits for *all* of those instances, and everything behind the pool (the
//! frontend, whatever registers through the VIP) waits with it. With members as resources the backend and the
//! frontend can exist early, each member joins the pool when its own dependencies are ready, and a member's
//! dependents wait for that member only. (The complete example's module uses this: the agents register through the
//! VIP as soon as the first server is in the pool, while the other servers' members are added next to them.)
//!
//! A member is a read-modify-write of the backend's `linkedServers` ([`crate::opnsense::Client::haproxy_link`]).
//! Use members *or* the backend's `servers` for one backend, not both: with `servers` set the backend owns the whole
//! list and would remove members it does not name. With `servers` unset the backend keeps whatever members the
//! firewall has (see `opnsense_haproxy_backend.rs`).
//!
//! Both ends are fixed for the member's life (changing either is a replacement); the id is `<backend>/<server>`,
//! which is also what import takes.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::opnsense_common::*;
use crate::framework::*;
use crate::opnsense::haproxy::{Backend, Server};
use crate::opnsense::Client;

pub const TYPE: &str = "homelab_opnsense_haproxy_backend_member";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MemberModel {
    pub id: Tf<String>,
    pub backend: Tf<String>,
    pub server: Tf<String>,
}

/// Identity: the two UUIDs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberIdentity {
    pub backend: String,
    pub server: String,
}

fn member_id(backend: Uuid, server: Uuid) -> String {
    format!("{backend}/{server}")
}

/// `<backend uuid>/<server uuid>` → the two UUIDs.
fn parse_member_id(id: &str) -> Result<(Uuid, Uuid), Diagnostics> {
    let bad = || {
        Diagnostics::from(Diagnostic::error(
            "Invalid backend member id",
            format!(
                "{id:?} is not `<backend id>/<server id>` (two OPNsense UUIDs, e.g. \
                 `0b9d4c2e-6a71-4f3b-8e05-c1d2a3b4e5f6/5f1e2d3c-4b5a-4697-8879-6a5b4c3d2e1f`)."
            ),
        ))
    };
    let (b, s) = id.split_once('/').ok_or_else(bad)?;
    match (Uuid::parse_str(b.trim()), Uuid::parse_str(s.trim())) {
        (Ok(b), Ok(s)) => Ok((b, s)),
        _ => Err(bad()),
    }
}

fn ends(m: &MemberModel) -> Result<(Uuid, Uuid), Diagnostics> {
    let backend = parse_uuid(m.backend.known().map_or("", String::as_str), "backend")?;
    let server = parse_uuid(m.server.known().map_or("", String::as_str), "server")?;
    Ok((backend, server))
}

pub fn schema() -> Schema {
    Schema::new(
        "One HAProxy server in one backend pool on OPNsense. Use it instead of the backend's `servers` when members \
         should join the pool one by one (each when its own dependencies are ready) rather than all at once; don't \
         use both for one backend. Changing either end replaces the member.",
    )
    .attribute(
        Attribute::string("id")
            .computed()
            .use_state_for_unknown()
            .description("`<backend id>/<server id>`; also the import id."),
    )
    .attribute(
        Attribute::string("backend")
            .required()
            .requires_replace()
            .validate(uuid_validator())
            .description("Id of the `homelab_opnsense_haproxy_backend` whose pool the server joins."),
    )
    .attribute(
        Attribute::string("server")
            .required()
            .requires_replace()
            .validate(uuid_validator())
            .description("Id of the `homelab_opnsense_haproxy_server` that joins the pool."),
    )
}

pub struct MemberResource;

/// Apply-time checks: both ends exist, and no other server of the pool has this server's name (haproxy refuses a
/// backend with two servers of one name).
async fn check(c: &Client, backend: Uuid, server: Uuid) -> Result<(), Diagnostics> {
    let model = c
        .haproxy()
        .model()
        .await
        .map_err(|e| diags(e, "Could not read the HAProxy backends"))?;
    let Some(pool) = model
        .get::<Backend>(backend)
        .map_err(|e| diags(e, "Could not read the HAProxy backend"))?
    else {
        return Err(Diagnostic::error(
            "Unknown HAProxy backend",
            format!("No HAProxy backend has the id {backend}; reference a `homelab_opnsense_haproxy_backend`'s id."),
        )
        .at(attr("backend"))
        .into());
    };
    let Some(srv) = model
        .get::<Server>(server)
        .map_err(|e| diags(e, "Could not read the HAProxy servers"))?
    else {
        return Err(Diagnostic::error(
            "Unknown HAProxy server",
            format!("No HAProxy server has the id {server}; reference a `homelab_opnsense_haproxy_server`'s id."),
        )
        .at(attr("server"))
        .into());
    };
    for other in pool.linked_servers.iter().filter(|u| **u != server) {
        if let Ok(Some(o)) = model.get::<Server>(*other) {
            if o.name == srv.name {
                return Err(Diagnostic::error(
                    "Two servers with the same name",
                    format!(
                        "The backend {:?} already has a server named {:?} ({other}); haproxy would refuse the pool. \
                         Give the servers distinct names.",
                        pool.name, srv.name
                    ),
                )
                .at(attr("server"))
                .into());
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Resource for MemberResource {
    type Model = MemberModel;
    type Identity = MemberIdentity;

    fn type_name(&self) -> &'static str {
        TYPE
    }
    fn schema(&self) -> Schema {
        schema()
    }
    fn identity_schema(&self) -> Option<IdentitySchema> {
        Some(
            IdentitySchema::new()
                .attribute(IdentityAttribute::string("backend", "The backend's UUID."))
                .attribute(IdentityAttribute::string("server", "The server's UUID.")),
        )
    }
    fn identity(&self, state: &MemberModel) -> Option<MemberIdentity> {
        Some(MemberIdentity {
            backend: state.backend.known()?.clone(),
            server: state.server.known()?.clone(),
        })
    }
    async fn modify_plan(
        &self,
        ctx: &Context,
        plan: &mut Plan<MemberModel>,
    ) -> Result<(), Diagnostics> {
        if let (Some(b), Some(s)) = (plan.planned.backend.known(), plan.planned.server.known()) {
            if let (Ok(b), Ok(s)) = (Uuid::parse_str(b), Uuid::parse_str(s)) {
                plan.planned.id = Tf::Known(member_id(b, s));
            }
        }
        if plan.prior.is_none() {
            // A member changes the backend: the pool's batch waits for it (see `opnsense::coalesce`).
            if let Some(c) = client_if_ready(ctx) {
                c.expect_haproxy_write();
            }
        }
        Ok(())
    }
    async fn create(&self, ctx: &Context, plan: MemberModel) -> Result<MemberModel, Diagnostics> {
        let c = client(ctx)?;
        c.haproxy_write_arrived();
        let (backend, server) = ends(&plan)?;
        check(&c, backend, server).await?;
        match c.haproxy_link(backend, server, true).await {
            Ok(Some(_)) => Ok(MemberModel {
                id: Tf::Known(member_id(backend, server)),
                ..plan
            }),
            Ok(None) => Err(Diagnostic::error(
                "Unknown HAProxy backend",
                format!("The HAProxy backend {backend} is gone; nothing was changed."),
            )
            .at(attr("backend"))
            .into()),
            Err(e) => Err(diags(e, "Could not add the server to the backend")),
        }
    }
    async fn read(
        &self,
        ctx: &Context,
        state: MemberModel,
    ) -> Result<Option<MemberModel>, Diagnostics> {
        let c = client(ctx)?;
        let (backend, server) = ends(&state)?;
        let model = c
            .haproxy()
            .model()
            .await
            .map_err(|e| diags(e, "Could not read the HAProxy backends"))?;
        let linked = model
            .get::<Backend>(backend)
            .map_err(|e| diags(e, "Could not read the HAProxy backend"))?
            .is_some_and(|b| b.linked_servers.contains(&server));
        // Gone (the backend, or the server from its pool): Terraform plans the member again.
        Ok(linked.then(|| MemberModel {
            id: Tf::Known(member_id(backend, server)),
            ..state
        }))
    }
    async fn update(
        &self,
        _ctx: &Context,
        _prior: MemberModel,
        plan: MemberModel,
    ) -> Result<MemberModel, Diagnostics> {
        // Both ends force replacement; nothing else can change.
        Ok(plan)
    }
    async fn delete(&self, ctx: &Context, state: MemberModel) -> Result<(), Diagnostics> {
        let c = client(ctx)?;
        let (backend, server) = ends(&state)?;
        c.haproxy_link(backend, server, false)
            .await
            .map(|_| ())
            .map_err(|e| diags(e, "Could not remove the server from the backend"))
    }
    async fn import(&self, _ctx: &Context, id: &str) -> Result<MemberModel, Diagnostics> {
        let (backend, server) = parse_member_id(id)?;
        Ok(MemberModel {
            id: Tf::Known(member_id(backend, server)),
            backend: Tf::Known(backend.to_string()),
            server: Tf::Known(server.to_string()),
        })
    }
    async fn import_identity(
        &self,
        ctx: &Context,
        identity: MemberIdentity,
    ) -> Result<MemberModel, Diagnostics> {
        self.import(ctx, &format!("{}/{}", identity.backend, identity.server))
            .await
    }
}

pub fn register(r: &mut Registry) {
    r.resource(MemberResource);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::codec;

    #[test]
    fn the_id_is_backend_slash_server_and_import_reads_it_back() {
        let (b, s) = (Uuid::new_v4(), Uuid::new_v4());
        let id = member_id(b, s);
        assert_eq!(parse_member_id(&id).unwrap(), (b, s));
        assert_eq!(parse_member_id(&format!(" {b} / {s} ")).unwrap(), (b, s));
        for bad in [
            "",
            "x/y",
            &b.to_string(),
            &format!("{b}/"),
            &format!("{b}/{s}/x"),
        ] {
            let e = parse_member_id(bad).unwrap_err();
            assert!(
                e.iter()
                    .next()
                    .unwrap()
                    .detail
                    .contains("<backend id>/<server id>"),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn schema_is_valid_and_round_trips() {
        assert!(schema().problems().is_empty(), "{:?}", schema().problems());
        let m = MemberModel {
            id: Tf::Known("a/b".into()),
            backend: Tf::Known(Uuid::new_v4().to_string()),
            server: Tf::Known(Uuid::new_v4().to_string()),
        };
        let v = codec::to_value(&m, &schema().value_type()).unwrap();
        assert_eq!(codec::from_value::<MemberModel>(&v).unwrap(), m);
    }

    #[test]
    fn ends_point_at_the_attribute() {
        let m = MemberModel {
            backend: Tf::Known("nope".into()),
            server: Tf::Known(Uuid::new_v4().to_string()),
            ..Default::default()
        };
        let e = ends(&m).unwrap_err();
        assert_eq!(e.iter().next().unwrap().path, Some(attr("backend")));
    }
}
