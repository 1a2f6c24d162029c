//! Routing and the generic CRUD actions of `ApiMutableModelControllerBase`.
//!
//! Routes are matched like OPNsense's router: `/api/<module>/<controller>/<action>/<params...>`, case-insensitive,
//! snake_case and camelCase equivalent (`vip_settings` = `vipSettings`, `add_server` = `addServer`), extra path
//! segments ignored, too few required parameters = 404 "Endpoint not found". Each action checks the HTTP method
//! itself and answers a failure body with HTTP 200 on the wrong one, as the real controllers do.

pub mod alias;
pub mod carp_status;
pub mod core;
pub mod filter;
pub mod haproxy;
pub mod hasync;
pub mod maintenance;
pub mod statistics;
pub mod vip;

use serde_json::{json, Map, Value};

use crate::app::{App, ModelKind};
use crate::model::{self, Ctx, SearchParams, Validations};
use crate::request::{ApiRequest, ApiResponse};
use crate::schema::Section;
use crate::store::{Item, State};

/// Lowercased route segment with underscores removed.
pub fn norm(s: &str) -> String {
    s.to_ascii_lowercase().replace('_', "")
}

/// Answers one API call (auth and faults are handled by the server before this).
pub async fn dispatch(app: &App, req: &ApiRequest) -> ApiResponse {
    let segs: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
    if segs.len() < 4 || segs[0] != "api" {
        return ApiResponse::not_found();
    }
    let (module, controller, action) = (norm(segs[1]), norm(segs[2]), norm(segs[3]));
    let params: Vec<String> = segs[4..]
        .iter()
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    if module == "haproxy" && !app.cfg.haproxy_plugin_installed {
        return ApiResponse::not_found();
    }
    match (module.as_str(), controller.as_str()) {
        ("haproxy", "settings") => haproxy::settings(app, req, &action, &params).await,
        ("haproxy", "service") => haproxy::service(app, req, &action).await,
        ("haproxy", "export") => haproxy::export(app, req, &action, &params).await,
        ("haproxy", "statistics") => statistics::handle(app, req, &action).await,
        ("haproxy", "maintenance") => maintenance::handle(app, req, &action).await,
        ("interfaces", "vipsettings") => vip::handle(app, req, &action, &params).await,
        ("firewall", "alias") => alias::handle(app, req, &action, &params).await,
        ("firewall", "filter") => filter::handle(app, req, &action, &params).await,
        ("core", "hasync") => hasync::settings(app, req, &action).await,
        ("core", "hasyncstatus") => hasync::status(app, req, &action, &params).await,
        ("diagnostics", "interface") => carp_status::handle(app, req, &action, &params).await,
        ("core", _) | ("diagnostics", _) => core::handle(app, req, &controller, &action).await,
        _ => ApiResponse::not_found(),
    }
}

/// One CRUD-able array section behind a controller.
#[derive(Debug, Clone, Copy)]
pub struct Crud {
    pub model: ModelKind,
    pub section: &'static str,
    /// Wrapper key of request and response bodies (`server`, `vip`, `alias`, `rule`).
    pub wrapper: &'static str,
    /// Model description used in "in use" messages (`HAProxy`).
    pub model_name: &'static str,
    pub safe_delete: bool,
    /// Whether `toggle/{uuid}/{0|1}` sets the state (alias, filter) or still flips it (HAProxy).
    pub toggle_honours_value: bool,
    pub search_fields: &'static [&'static str],
    pub default_sort: &'static [&'static str],
}

/// Extra model-level validation (OPNsense's `Model::performValidation`), called after field validation. It gets the
/// app so checks can see the box's configuration (its interfaces), as the real models read `config.xml`.
pub type ExtraValidation =
    fn(&App, &State, &Crud, &str, &std::collections::BTreeMap<String, String>, &mut Validations);

impl Crud {
    pub fn section_def(&self) -> &'static Section {
        self.model
            .schema()
            .section(self.section)
            .expect("section in schema")
    }

    pub fn ctx<'a>(&self, st: &'a State, app: &'a App) -> Ctx<'a> {
        Ctx {
            data: self.model.data(st),
            interfaces: &app.cfg.interfaces,
        }
    }

    /// `GET get<W>[/{uuid}]`.
    pub fn get(&self, app: &App, st: &State, uuid: Option<&str>) -> ApiResponse {
        let sec = self.section_def();
        let ctx = self.ctx(st, app);
        let values = match uuid {
            None => model::defaults(sec),
            Some(u) => match self.model.data(st).find(self.section, u) {
                Some(item) => item.values.clone(),
                None => return ApiResponse::json(json!([])),
            },
        };
        ApiResponse::json(
            json!({ self.wrapper: Value::Object(model::render_item(sec, &values, &ctx)) }),
        )
    }

    /// `search<W>s`: every row, filtered/sorted/paged.
    pub fn search(&self, app: &App, st: &State, req: &ApiRequest) -> ApiResponse {
        let sec = self.section_def();
        let ctx = self.ctx(st, app);
        let rows = self
            .model
            .data(st)
            .items(self.section)
            .iter()
            .map(|i| model::search_row(sec, i, &ctx))
            .collect();
        let params = SearchParams::from_request(&req.query, &req.post);
        ApiResponse::json(model::search(
            rows,
            &params,
            self.search_fields,
            self.default_sort,
        ))
    }

    /// The wrapper object of a POST, or `None` (→ bare `{"result":"failed"}`).
    pub fn wrapped<'r>(&self, req: &'r ApiRequest) -> Option<&'r Map<String, Value>> {
        if !req.is_post() {
            return None;
        }
        match req.post.get(self.wrapper) {
            Some(Value::Object(m)) => Some(m),
            _ => None,
        }
    }

    /// `POST add<W>`.
    pub fn add(
        &self,
        app: &App,
        st: &mut State,
        req: &ApiRequest,
        extra: Option<ExtraValidation>,
    ) -> (ApiResponse, bool) {
        let Some(input) = self.wrapped(req) else {
            return (failed(), false);
        };
        self.create_with(app, st, None, input, extra, true)
    }

    /// Creates an item with `uuid` from defaults + input, validating every field.
    pub fn create_with(
        &self,
        app: &App,
        st: &mut State,
        uuid: Option<&str>,
        input: &Map<String, Value>,
        extra: Option<ExtraValidation>,
        report_uuid: bool,
    ) -> (ApiResponse, bool) {
        let sec = self.section_def();
        let mut values = model::defaults(sec);
        if model::apply_input(sec, &mut values, input).is_err() {
            return (ApiResponse::unexpected(), false);
        }
        let mut v = model::validate(sec, &values, None, &self.ctx(st, app), self.wrapper);
        if let Some(extra) = extra {
            extra(app, st, self, uuid.unwrap_or(""), &values, &mut v);
        }
        if !v.is_empty() {
            return (
                ApiResponse::json(json!({"result": "failed", "validations": v.to_json()})),
                false,
            );
        }
        // a new uuid is only taken once the item is accepted
        let uuid = uuid.map(str::to_string).unwrap_or_else(|| app.next_uuid());
        self.model.data_mut(st).items_mut(self.section).push(Item {
            uuid: uuid.clone(),
            values,
        });
        if report_uuid {
            (
                ApiResponse::json(json!({"result": "saved", "uuid": uuid})),
                true,
            )
        } else {
            (ApiResponse::json(json!({"result": "saved"})), true)
        }
    }

    /// `POST set<W>/{uuid}`: partial update, or create when the uuid is an unknown lowercase v4 UUID.
    pub fn set(
        &self,
        app: &App,
        st: &mut State,
        req: &ApiRequest,
        uuid: &str,
        extra: Option<ExtraValidation>,
    ) -> (ApiResponse, bool) {
        let Some(input) = self.wrapped(req) else {
            return (failed(), false);
        };
        let sec = self.section_def();
        let Some(existing) = self.model.data(st).find(self.section, uuid).cloned() else {
            if model::is_lower_v4_uuid(uuid) {
                return self.create_with(app, st, Some(uuid), input, extra, false);
            }
            return (failed(), false);
        };
        let mut values = existing.values.clone();
        let changed = match model::apply_input(sec, &mut values, input) {
            Ok(c) => c,
            Err(_) => return (ApiResponse::unexpected(), false),
        };
        let mut v = model::validate(
            sec,
            &values,
            Some(&changed),
            &self.ctx(st, app),
            self.wrapper,
        );
        if let Some(extra) = extra {
            extra(app, st, self, uuid, &values, &mut v);
        }
        if !v.is_empty() {
            return (
                ApiResponse::json(json!({"result": "failed", "validations": v.to_json()})),
                false,
            );
        }
        if let Some(item) = self
            .model
            .data_mut(st)
            .items_mut(self.section)
            .iter_mut()
            .find(|i| i.uuid == uuid)
        {
            item.values = values;
        }
        (ApiResponse::json(json!({"result": "saved"})), true)
    }

    /// `POST del<W>/{uuid}`.
    pub fn del(&self, st: &mut State, req: &ApiRequest, uuid: &str) -> (ApiResponse, bool) {
        if !req.is_post() {
            return (failed(), false);
        }
        let data = self.model.data(st);
        let Some(item) = data.find(self.section, uuid) else {
            return (ApiResponse::json(json!({"result": "not found"})), false);
        };
        if self.safe_delete {
            let refs = data.referrers(uuid);
            if !refs.is_empty() {
                let mut msg = String::new();
                for (section, r, _) in &refs {
                    let name = describe(r);
                    msg.push_str(&format!(
                        "{} - {} {{{}.{}.{}}}\n",
                        self.model_name, name, self.model_name, section, r.uuid
                    ));
                }
                let title = format!("Item {} {{{}}} in use by:", self.section, describe(item));
                return (ApiResponse::user_error(&msg, &title), false);
            }
        }
        self.model
            .data_mut(st)
            .items_mut(self.section)
            .retain(|i| i.uuid != uuid);
        (ApiResponse::json(json!({"result": "deleted"})), true)
    }

    /// `POST toggle<W>/{uuid}[/{0|1}]`.
    pub fn toggle(
        &self,
        st: &mut State,
        req: &ApiRequest,
        uuid: &str,
        explicit: Option<&str>,
    ) -> (ApiResponse, bool) {
        if !req.is_post() {
            return (failed(), false);
        }
        let honours = self.toggle_honours_value;
        let Some(item) = self
            .model
            .data_mut(st)
            .items_mut(self.section)
            .iter_mut()
            .find(|i| i.uuid == uuid)
        else {
            return (failed(), false);
        };
        let current = item.get("enabled").to_string();
        let next = match explicit {
            Some(v @ ("0" | "1")) if honours => v.to_string(),
            _ => {
                if current == "1" {
                    "0".to_string()
                } else {
                    "1".to_string()
                }
            }
        };
        let changed = next != current;
        item.values.insert("enabled".into(), next.clone());
        let result = if next == "1" { "Enabled" } else { "Disabled" };
        (
            ApiResponse::json(json!({"result": result, "changed": changed})),
            changed,
        )
    }
}

/// The label OPNsense uses for an item in messages: its description, else its name.
fn describe(item: &Item) -> String {
    for k in ["description", "descr", "name"] {
        let v = item.get(k);
        if !v.is_empty() {
            return v.to_string();
        }
    }
    item.uuid.clone()
}

pub fn failed() -> ApiResponse {
    ApiResponse::json(json!({"result": "failed"}))
}
