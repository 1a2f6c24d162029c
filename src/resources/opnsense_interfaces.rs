//! Data source `homelab_opnsense_interfaces`: the interfaces a VIP or rule can use (`lan`, `wan`, `opt1`, …) with
//! their descriptions, so configurations can look an interface up by what the UI shows instead of hard-coding
//! `optN`. Read from the VIP template, which needs only the VIP privilege.

use serde::{Deserialize, Serialize};

use super::opnsense_common::*;
use crate::framework::*;

pub const TYPE: &str = "homelab_opnsense_interfaces";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfaceModel {
    pub name: Tf<String>,
    pub description: Tf<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InterfacesModel {
    pub interfaces: Tf<Vec<InterfaceModel>>,
    pub by_description: Tf<std::collections::BTreeMap<String, String>>,
}

pub struct Interfaces;

#[async_trait]
impl DataSource for Interfaces {
    type Model = InterfacesModel;

    fn type_name(&self) -> &'static str {
        TYPE
    }

    fn schema(&self) -> Schema {
        Schema::new("The assignable interfaces of the OPNsense (as used by virtual IPs and firewall rules).")
            .attribute(
                Attribute::nested(
                    "interfaces",
                    ObjectNesting::List,
                    vec![
                        Attribute::string("name")
                            .computed()
                            .description("Interface key used by the API (`lan`, `wan`, `opt1`, …)."),
                        Attribute::string("description")
                            .computed()
                            .description("Description shown in the UI (e.g. `LAN`, `K3S`)."),
                    ],
                )
                .computed()
                .description("Every interface, sorted by key."),
            )
            .attribute(
                Attribute::map("by_description", Type::String)
                    .computed()
                    .description("Interface key by UI description, e.g. `by_description[\"K3S\"]` → `opt2`."),
            )
    }

    async fn read(
        &self,
        ctx: &Context,
        _config: InterfacesModel,
    ) -> Result<InterfacesModel, Diagnostics> {
        let c = client(ctx)?;
        let ifaces = c
            .vips()
            .interfaces()
            .await
            .map_err(|e| diags(e, "Could not read the OPNsense interfaces"))?;
        Ok(InterfacesModel {
            interfaces: Tf::Known(
                ifaces
                    .iter()
                    .map(|(k, v)| InterfaceModel {
                        name: Tf::Known(k.clone()),
                        description: Tf::Known(v.clone()),
                    })
                    .collect(),
            ),
            by_description: Tf::Known(ifaces.into_iter().map(|(k, v)| (v, k)).collect()),
        })
    }
}

pub fn register(r: &mut Registry) {
    r.data_source(Interfaces);
}
