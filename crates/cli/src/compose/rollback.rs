//! A failed `up` or `create` leaves the project as it was before (the issue's "nothing created
//! or half-created"). docker compose removes a replaced container as soon as its successor is
//! created (`recreateContainer`: create as `{id12}_{name}`, stop and remove the old one,
//! rename), so a later failure — a port taken at start, a dependency that fails — leaves the
//! project half-replaced. barge keeps what convergence replaces or scales away *retired*:
//! stopped (a replaced one renamed `{id12}_{name}` so its successor takes the name) and
//! removed only once every container has started; until then [`Before::restore`] can put it
//! back.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Result;
use barge_compose::convert::labels;
use hyper::Method;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::project::{self, containers, event, id_of, name_of, OneOff};
use super::up::{remove_container, stop_container};
use crate::client::{query, seg, Client};

/// A container convergence stopped and keeps until the project has started.
#[derive(Debug, Clone)]
pub(super) struct Retired {
    pub id: String,
    /// Its name now.
    pub name: String,
    /// Replaced by a successor (announced "Recreated"), else scaled away or an orphan.
    pub replaced: bool,
}

/// Removes the retired containers (the project converged and started); their anonymous
/// volumes stay, as compose's `ContainerRemove` without `v` keeps them (a successor inherits
/// them).
pub(super) async fn remove_retired(client: &Client, retired: &[Retired]) -> Result<()> {
    let mut set = JoinSet::new();
    for r in retired {
        let (client, r) = (client.clone(), r.clone());
        set.spawn(async move {
            remove_container(&client, &r.id, false).await?;
            if !r.replaced {
                event("Container", &r.name, "Removed");
            }
            anyhow::Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// The project as it was before an `up` or `create`, so a failure puts it back: containers
/// (name, running or not), networks and volumes carrying the project's label.
pub(super) struct Before {
    containers: BTreeMap<String, (String, bool)>,
    networks: BTreeSet<String>,
    volumes: BTreeSet<String>,
}

impl Before {
    /// What the project has now.
    pub(super) async fn take(client: &Client, project: &str) -> Result<Before> {
        let (containers, networks, volumes) = tokio::try_join!(
            containers(client, project, true, OneOff::Include, &[]),
            Self::networks(client, project),
            Self::volumes(client, project),
        )?;
        Ok(Before {
            containers: containers
                .iter()
                .map(|c| {
                    (
                        id_of(c).to_string(),
                        (name_of(c).to_string(), c["State"] == "running"),
                    )
                })
                .collect(),
            networks,
            volumes,
        })
    }

    fn filter(project: &str) -> String {
        json!({"label": [format!("{}={project}", labels::PROJECT)]}).to_string()
    }

    async fn networks(client: &Client, project: &str) -> Result<BTreeSet<String>> {
        let path = format!(
            "/networks{}",
            query(&[("filters", Some(Self::filter(project)))])
        );
        let list: Vec<Value> = client.json(Method::GET, &path, None).await?;
        Ok(list
            .iter()
            .filter_map(|n| n["Name"].as_str().map(str::to_string))
            .collect())
    }

    async fn volumes(client: &Client, project: &str) -> Result<BTreeSet<String>> {
        let path = format!(
            "/volumes{}",
            query(&[("filters", Some(Self::filter(project)))])
        );
        let list: Value = client.json(Method::GET, &path, None).await?;
        Ok(list["Volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["Name"].as_str().map(str::to_string))
            .collect())
    }

    /// Puts the project back as [`Before::take`] found it: removes the containers,
    /// networks and volumes made since, gives retired containers their names back and
    /// starts again those that were running (stops those that were not); returns `error`
    /// (what made the command fail).
    pub(super) async fn restore(
        &self,
        client: &Client,
        project: &str,
        error: anyhow::Error,
    ) -> anyhow::Error {
        let Ok(now) = containers(client, project, true, OneOff::Include, &[]).await else {
            return error;
        };
        // the new containers go first: they hold the names the old ones get back
        let mut set = JoinSet::new();
        for c in now
            .iter()
            .filter(|c| !self.containers.contains_key(id_of(c)))
        {
            let (id, name) = (id_of(c).to_string(), name_of(c).to_string());
            // a successor shares its predecessor's anonymous volumes: those stay
            let volumes = project::label(c, labels::REPLACE).is_empty();
            let client = client.clone();
            set.spawn(async move {
                if remove_container(&client, &id, volumes).await.is_ok() {
                    event("Container", &name, "Removed");
                }
            });
        }
        while set.join_next().await.is_some() {}
        for c in &now {
            let Some((name, was_running)) = self.containers.get(id_of(c)) else {
                continue;
            };
            let (id, running) = (id_of(c).to_string(), c["State"] == "running");
            let (name, was_running) = (name.clone(), *was_running);
            let now_name = name_of(c).to_string();
            let client = client.clone();
            set.spawn(async move {
                if now_name != name {
                    let path = format!(
                        "/containers/{}/rename{}",
                        seg(&id),
                        query(&[("name", Some(name.clone()))])
                    );
                    if client.send(Method::POST, &path, None).await.is_err() {
                        return;
                    }
                }
                if was_running && !running {
                    let path = format!("/containers/{}/start", seg(&id));
                    if client.send(Method::POST, &path, None).await.is_ok() {
                        event("Container", &name, "Started");
                    }
                } else if !was_running
                    && running
                    && stop_container(&client, &id, Some(0)).await.is_ok()
                {
                    event("Container", &name, "Stopped");
                }
            });
        }
        while set.join_next().await.is_some() {}
        for n in Self::networks(client, project).await.unwrap_or_default() {
            if !self.networks.contains(&n) {
                let path = format!("/networks/{}", seg(&n));
                if client.send(Method::DELETE, &path, None).await.is_ok() {
                    event("Network", &n, "Removed");
                }
            }
        }
        for v in Self::volumes(client, project).await.unwrap_or_default() {
            if !self.volumes.contains(&v) {
                let path = format!("/volumes/{}", seg(&v));
                if client.send(Method::DELETE, &path, None).await.is_ok() {
                    event("Volume", &v, "Removed");
                }
            }
        }
        error
    }
}
