//! Convergence as docker compose v2 plans it (`pkg/compose/convergence.go`): which existing
//! containers of a service to keep, start, recreate or remove and how many to create, and the
//! order services are handled in (dependencies first; the reverse for `down`).

use crate::model::Project;
use std::collections::{BTreeMap, BTreeSet};

/// A container of the project as the engine reports it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// Container ID.
    pub id: String,
    /// Name without the leading `/`.
    pub name: String,
    /// `container-number` label (0 when missing).
    pub number: i64,
    /// `config-hash` label.
    pub hash: String,
    /// `image` label.
    pub image: String,
    /// Engine state (`running`, `exited`, `created`, ...).
    pub state: String,
    /// Engine names of the networks it is connected to.
    pub networks: Vec<String>,
    /// Names of the volumes mounted.
    pub volumes: Vec<String>,
}

/// `--force-recreate` / `--no-recreate` / default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recreate {
    /// Recreate when the configuration diverged.
    #[default]
    Diverged,
    /// Always recreate.
    Force,
    /// Never recreate.
    Never,
}

/// One step of a service's convergence.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Up to date (started if not running).
    Keep { id: String, running: bool },
    /// Diverged: replace with a new container of the same number.
    Recreate { id: String, number: i64 },
    /// Beyond the scale: stop and remove.
    Remove { id: String },
    /// Missing replica: create it.
    Create { number: i64 },
}

/// What the service should look like.
#[derive(Debug, Clone)]
pub struct Expected<'a> {
    /// `config-hash` the containers should carry.
    pub hash: &'a str,
    /// Image ID (`image` label); empty = unknown, not compared.
    pub image: &'a str,
    /// Engine names of the networks the service joins.
    pub networks: &'a [String],
    /// Engine names of the named volumes the service mounts.
    pub volumes: &'a [String],
    /// Number of replicas.
    pub scale: u32,
}

/// Whether `c` must be recreated (compose's `mustRecreate`): the hash or image changed, a
/// running container misses one of the service's networks, or a named volume is not mounted.
pub fn must_recreate(e: &Expected<'_>, c: &Observed, policy: Recreate) -> bool {
    match policy {
        Recreate::Never => false,
        Recreate::Force => true,
        Recreate::Diverged => {
            c.hash != e.hash
                || (!e.image.is_empty() && c.image != e.image)
                || (c.state == "running" && e.networks.iter().any(|n| !c.networks.contains(n)))
                || e.volumes.iter().any(|v| !c.volumes.contains(v))
        }
    }
}

/// The actions converging `containers` (one service, one-off containers excluded) to `e`:
/// obsolete containers first, then up-to-date ones by number, so scaling down removes the
/// obsolete and highest-numbered ones; new replicas take the numbers after the highest.
pub fn converge(e: &Expected<'_>, containers: &[Observed], policy: Recreate) -> Vec<Action> {
    // up-to-date ones first, each group by number: scaling down keeps the up-to-date ones
    // with the lowest numbers and removes the obsolete and highest-numbered ones
    let mut sorted: Vec<(bool, &Observed)> = containers
        .iter()
        .map(|c| (must_recreate(e, c, policy), c))
        .collect();
    sorted.sort_by_key(|(obsolete, c)| (*obsolete, c.number));
    let mut remaining = e.scale as usize;
    let mut out = Vec::new();
    for (obsolete, c) in sorted {
        let id = c.id.clone();
        out.push(match (remaining, obsolete) {
            (0, _) => Action::Remove { id },
            (_, false) => Action::Keep {
                id,
                running: c.state == "running",
            },
            (_, true) => Action::Recreate {
                id,
                number: c.number,
            },
        });
        remaining = remaining.saturating_sub(1);
    }
    let highest = containers.iter().map(|c| c.number).max().unwrap_or(0);
    out.extend((1..=remaining as i64).map(|i| Action::Create {
        number: highest + i,
    }));
    out
}

/// The services `name` depends on that the project enables: its `depends_on`, which the
/// loader extends (as compose-go's) with links, `service:NAME` namespaces and
/// `volumes_from`, so this is the one place the dependency graph is read.
pub fn dependencies(project: &Project, name: &str) -> Vec<String> {
    project.services.get(name).map_or_else(Vec::new, |s| {
        s.depends_on
            .keys()
            .filter(|k| project.services.contains_key(*k))
            .cloned()
            .collect()
    })
}

/// Services in dependency order as levels: every service's [`dependencies`] are in earlier
/// levels; services of one level may run in
/// parallel. Only services in `selected` and their dependencies (unless `no_deps`).
pub fn levels(project: &Project, selected: &[String], no_deps: bool) -> Vec<Vec<String>> {
    let deps = |name: &str| dependencies(project, name);
    let mut wanted: BTreeSet<String> = if selected.is_empty() {
        project.services.keys().cloned().collect()
    } else {
        selected.iter().cloned().collect()
    };
    if !no_deps {
        let mut todo: Vec<String> = wanted.iter().cloned().collect();
        while let Some(s) = todo.pop() {
            for d in deps(&s) {
                if wanted.insert(d.clone()) {
                    todo.push(d);
                }
            }
        }
    }
    let mut depth: BTreeMap<String, usize> = BTreeMap::new();
    fn depth_of(
        s: &str,
        deps: &dyn Fn(&str) -> Vec<String>,
        memo: &mut BTreeMap<String, usize>,
        stack: &mut Vec<String>,
    ) -> usize {
        if let Some(d) = memo.get(s) {
            return *d;
        }
        if stack.iter().any(|x| x == s) {
            return 0; // cycles are refused by the loader
        }
        stack.push(s.to_string());
        let d = deps(s)
            .iter()
            .map(|x| depth_of(x, deps, memo, stack) + 1)
            .max()
            .unwrap_or(0);
        stack.pop();
        memo.insert(s.to_string(), d);
        d
    }
    let mut out: Vec<Vec<String>> = Vec::new();
    for s in &wanted {
        let d = depth_of(s, &deps, &mut depth, &mut Vec::new());
        if out.len() <= d {
            out.resize(d + 1, Vec::new());
        }
        out[d].push(s.clone());
    }
    out.retain(|l| !l.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Dependency, Service};

    fn obs(id: &str, n: i64, hash: &str, state: &str) -> Observed {
        Observed {
            id: id.into(),
            name: format!("p-web-{n}"),
            number: n,
            hash: hash.into(),
            state: state.into(),
            networks: vec!["p_default".into()],
            ..Default::default()
        }
    }

    #[test]
    fn nothing_changed_keeps_everything() {
        let nets = vec!["p_default".to_string()];
        let e = Expected {
            hash: "h",
            image: "",
            networks: &nets,
            volumes: &[],
            scale: 2,
        };
        let got = converge(
            &e,
            &[obs("a", 1, "h", "running"), obs("b", 2, "h", "exited")],
            Recreate::Diverged,
        );
        assert_eq!(
            got,
            vec![
                Action::Keep {
                    id: "a".into(),
                    running: true
                },
                Action::Keep {
                    id: "b".into(),
                    running: false
                }
            ]
        );
        assert!(
            converge(&e, &[obs("a", 1, "h", "running")], Recreate::Force).contains(
                &Action::Recreate {
                    id: "a".into(),
                    number: 1
                }
            )
        );
    }

    #[test]
    fn scale_and_divergence() {
        let nets = vec!["p_default".to_string()];
        let e = Expected {
            hash: "new",
            image: "",
            networks: &nets,
            volumes: &[],
            scale: 3,
        };
        let got = converge(&e, &[obs("a", 1, "old", "running")], Recreate::Diverged);
        assert_eq!(
            got,
            vec![
                Action::Recreate {
                    id: "a".into(),
                    number: 1
                },
                Action::Create { number: 2 },
                Action::Create { number: 3 }
            ]
        );
        assert_eq!(
            converge(&e, &[obs("a", 1, "old", "running")], Recreate::Never)[0],
            Action::Keep {
                id: "a".into(),
                running: true
            }
        );
        let down = Expected { scale: 1, ..e };
        let got = converge(
            &down,
            &[
                obs("a", 1, "new", "running"),
                obs("b", 2, "new", "running"),
                obs("c", 3, "old", "running"),
            ],
            Recreate::Diverged,
        );
        assert_eq!(
            got,
            vec![
                Action::Keep {
                    id: "a".into(),
                    running: true
                },
                Action::Remove { id: "b".into() },
                Action::Remove { id: "c".into() }
            ]
        );
        // a running container missing a network is recreated
        let mut c = obs("a", 1, "new", "running");
        c.networks.clear();
        assert!(must_recreate(&down, &c, Recreate::Diverged));
        // so is one without a named volume of the service
        let vols = vec!["p_data".to_string()];
        let with_volume = Expected {
            volumes: &vols,
            ..down.clone()
        };
        let mut c = obs("a", 1, "new", "exited");
        assert!(must_recreate(&with_volume, &c, Recreate::Diverged));
        c.volumes = vols.clone();
        assert!(!must_recreate(&with_volume, &c, Recreate::Diverged));
    }

    #[test]
    fn levels_follow_dependencies() {
        let mut p = Project::default();
        let dep = |c: &str| Dependency {
            condition: c.into(),
            restart: false,
            required: true,
        };
        let mut web = Service::default();
        web.depends_on.insert("db".into(), dep("service_healthy"));
        let mut client = Service::default();
        client
            .depends_on
            .insert("web".into(), dep("service_started"));
        p.services.insert("db".into(), Service::default());
        p.services.insert("web".into(), web);
        p.services.insert("client".into(), client);
        p.services.insert("other".into(), Service::default());
        assert_eq!(
            levels(&p, &[], false),
            vec![
                vec!["db".to_string(), "other".to_string()],
                vec!["web".to_string()],
                vec!["client".to_string()]
            ]
        );
        assert_eq!(
            levels(&p, &["web".into()], false),
            vec![vec!["db".to_string()], vec!["web".to_string()]]
        );
        assert_eq!(
            levels(&p, &["web".into()], true),
            vec![vec!["web".to_string()]]
        );
    }
}
