//! Which resources the controllers work on, from the API's discovery.

use kube::core::discovery::{verbs, ApiCapabilities, ApiResource, Scope};
use kube::discovery::Discovery;
use kube::Client;

use crate::ControllerError;

/// A served resource that can be listed, watched and deleted.
#[derive(Clone, Debug)]
pub struct Resource {
    pub api: ApiResource,
    pub namespaced: bool,
    pub deletecollection: bool,
}

impl Resource {
    /// `group/version/plural`, unique per resource.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.api.group, self.api.version, self.api.plural
        )
    }
}

/// The preferred version of every resource that supports list, watch and delete.
pub async fn discover(client: &Client) -> Result<Vec<Resource>, ControllerError> {
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(|e| ControllerError::api("discovery", e))?;
    let mut out = Vec::new();
    for group in discovery.groups() {
        for (api, caps) in group.recommended_resources() {
            if usable(&caps) {
                out.push(Resource {
                    namespaced: caps.scope == Scope::Namespaced,
                    deletecollection: caps.supports_operation(verbs::DELETE_COLLECTION),
                    api,
                });
            }
        }
    }
    Ok(out)
}

fn usable(caps: &ApiCapabilities) -> bool {
    [verbs::LIST, verbs::WATCH, verbs::DELETE]
        .iter()
        .all(|v| caps.supports_operation(v))
}
