//! User impersonation (`k8s.io/apiserver/pkg/endpoints/filters/impersonation.go`): a request
//! with `Impersonate-User` (plus optional `Impersonate-Group`s, `Impersonate-Uid`,
//! `Impersonate-Extra-<key>`s) runs as that identity once RBAC allows the requester the verb
//! `impersonate` on each part:
//!
//! | header | resource (API group) | name |
//! |---|---|---|
//! | `Impersonate-User: system:serviceaccount:NS:SA` | `serviceaccounts` (`""`), namespace NS | SA |
//! | `Impersonate-User: NAME` | `users` (`""`) | NAME |
//! | `Impersonate-Group: G` (each) | `groups` (`""`) | G |
//! | `Impersonate-Extra-KEY: V` (each value) | `userextras/KEY` (`authentication.k8s.io`) | V |
//! | `Impersonate-Uid: U` | `uids` (`authentication.k8s.io`) | U |
//!
//! A denial is kube's 403 on the first part refused (`users "bob" is forbidden: User "jane"
//! cannot impersonate resource "users" in API group "" at the cluster scope`). Groups, extras
//! or a uid without a user are a 500, as kube answers. Without `Impersonate-Group`, a
//! ServiceAccount gets `system:serviceaccounts` and `system:serviceaccounts:NS`; everyone but
//! `system:anonymous` gets `system:authenticated` (anonymous: `system:unauthenticated`).
//! The uid and extras (keys lowercased and unescaped as kube's `unescapeExtraKey`, values in
//! header order) travel beside the [`Identity`] as a [`UserExtras`] request extension
//! (`SelfSubjectReview` shows them).

use std::collections::BTreeMap;

use axum::http::HeaderMap;

use crate::rbac::{Attributes, ResourceAttributes};
use crate::status::{ApiError, Target};
use crate::{ApiServer, Identity, ANONYMOUS};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA: &str = "impersonate-extra-";
const AUTHENTICATION: &str = "authentication.k8s.io";
const SA_PREFIX: &str = "system:serviceaccount:";

/// What an impersonated user carries besides its name and groups (`user.Info`'s `GetUID` and
/// `GetExtra`), a request extension next to the [`Identity`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserExtras {
    /// `Impersonate-Uid` (empty: none).
    pub uid: String,
    /// `Impersonate-Extra-KEY` values by (lowercased, unescaped) key.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// One thing to impersonate, as kube's ObjectReference of it.
struct Part {
    group: &'static str,
    resource: String,
    namespace: String,
    name: String,
}

/// Whether any impersonation header is present (the cheap check before the work).
pub(crate) fn requested(headers: &HeaderMap) -> bool {
    headers.keys().any(|k| {
        let k = k.as_str();
        k == USER || k == GROUP || k == UID || k.starts_with(EXTRA)
    })
}

/// `system:serviceaccount:NS:NAME` → (NS, NAME) (kube's `SplitUsername`).
fn split_service_account(user: &str) -> Option<(&str, &str)> {
    let (ns, name) = user.strip_prefix(SA_PREFIX)?.split_once(':')?;
    (!ns.is_empty() && !name.is_empty() && !name.contains(':')).then_some((ns, name))
}

impl ApiServer {
    /// The identity `requester` acts as under `headers`' impersonation (`None`: no
    /// impersonation asked), or kube's error.
    pub(crate) fn impersonate(
        &self,
        requester: &Identity,
        headers: &HeaderMap,
    ) -> Result<Option<(Identity, UserExtras)>, ApiError> {
        if !requested(headers) {
            return Ok(None);
        }
        let text = |v: &axum::http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
        let user = headers.get(USER).map(text).filter(|u| !u.is_empty());
        let groups: Vec<String> = headers.get_all(GROUP).iter().map(text).collect();
        let uid = headers.get(UID).map(text).filter(|u| !u.is_empty());
        let mut parts = Vec::new();
        let mut username = String::new();
        let mut out_groups: Vec<String> = Vec::new();
        if let Some(u) = &user {
            match split_service_account(u) {
                Some((ns, name)) => {
                    parts.push(Part {
                        group: "",
                        resource: "serviceaccounts".into(),
                        namespace: ns.into(),
                        name: name.into(),
                    });
                    if groups.is_empty() {
                        out_groups = vec![
                            "system:serviceaccounts".into(),
                            format!("system:serviceaccounts:{ns}"),
                        ];
                    }
                }
                None => parts.push(Part {
                    group: "",
                    resource: "users".into(),
                    namespace: String::new(),
                    name: u.clone(),
                }),
            }
            username = u.clone();
        }
        for g in &groups {
            parts.push(Part {
                group: "",
                resource: "groups".into(),
                namespace: String::new(),
                name: g.clone(),
            });
            out_groups.push(g.clone());
        }
        let mut extras: Vec<(&str, String)> = headers
            .iter()
            .filter_map(|(k, v)| k.as_str().strip_prefix(EXTRA).map(|key| (key, text(v))))
            .collect();
        extras.sort_by(|a, b| a.0.cmp(b.0));
        let mut carried = UserExtras {
            uid: uid.clone().unwrap_or_default(),
            extra: BTreeMap::new(),
        };
        for (key, value) in &extras {
            let key = urlencoding::decode(key)
                .map(|k| k.to_lowercase())
                .unwrap_or_else(|_| key.to_lowercase());
            carried
                .extra
                .entry(key.clone())
                .or_default()
                .push(value.clone());
            parts.push(Part {
                group: AUTHENTICATION,
                resource: format!("userextras/{key}"),
                namespace: String::new(),
                name: value.clone(),
            });
        }
        if let Some(uid) = &uid {
            parts.push(Part {
                group: AUTHENTICATION,
                resource: "uids".into(),
                namespace: String::new(),
                name: uid.clone(),
            });
        }
        if user.is_none() {
            let what: Vec<String> = parts
                .iter()
                .map(|p| format!("{}={}", p.resource, p.name))
                .collect();
            return Err(ApiError::Internal(format!(
                "requested [{}] without impersonating a user",
                what.join(" ")
            )));
        }
        for p in &parts {
            let (resource, subresource) = match p.resource.split_once('/') {
                Some((r, s)) => (r.to_string(), s.to_string()),
                None => (p.resource.clone(), String::new()),
            };
            let attrs = Attributes {
                verb: "impersonate".into(),
                resource: Some(ResourceAttributes {
                    group: p.group.into(),
                    resource: resource.clone(),
                    subresource,
                    namespace: p.namespace.clone(),
                    name: p.name.clone(),
                }),
                path: String::new(),
            };
            if !self.allowed(requester, &attrs) {
                let scope = if p.namespace.is_empty() {
                    "at the cluster scope".to_string()
                } else {
                    format!("in the namespace {:?}", p.namespace)
                };
                return Err(ApiError::Forbidden {
                    target: Target {
                        name: p.name.clone(),
                        group: p.group.into(),
                        kind: resource.clone(),
                        qualified: if p.group.is_empty() {
                            resource.clone()
                        } else {
                            format!("{resource}.{}", p.group)
                        },
                    },
                    why: format!(
                        "User {:?} cannot impersonate resource {:?} in API group {:?} {scope}",
                        requester.user, p.resource, p.group
                    ),
                    causes: vec![],
                });
            }
        }
        if username != ANONYMOUS {
            if !out_groups
                .iter()
                .any(|g| g == "system:authenticated" || g == "system:unauthenticated")
            {
                out_groups.push("system:authenticated".into());
            }
        } else if !out_groups.iter().any(|g| g == "system:unauthenticated") {
            out_groups.push("system:unauthenticated".into());
        }
        Ok(Some((
            Identity {
                user: username,
                groups: out_groups,
            },
            carried,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_usernames() {
        assert_eq!(
            split_service_account("system:serviceaccount:ns:sa"),
            Some(("ns", "sa"))
        );
        assert_eq!(split_service_account("system:serviceaccount:ns"), None);
        assert_eq!(split_service_account("system:serviceaccount::sa"), None);
        assert_eq!(split_service_account("jane"), None);
    }
}
