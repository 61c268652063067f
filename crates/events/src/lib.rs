//! Events as client-go's `tools/record` writes them, for every component of barge's cluster
//! (the node agent, the scheduler, the controllers, the ingress controller): core/v1 `Event`s
//! named `<object>.<hex nanoseconds>`, with `source` and `reportingComponent` set.
//!
//! Repeats are correlated as client-go's `EventCorrelator`/`eventLogger` do
//! (`k8s.io/client-go/tools/record/events_cache.go`): an event equal to one recorded before
//! — same source, involved object, type, reason and message — does not create another
//! object; the earlier one is patched (`count` + 1, `lastTimestamp` now), so
//! `kubectl describe` shows `BackOff … (x5 over 2m)` instead of five lines and the datastore
//! does not fill with copies. When the earlier Event is gone (deleted or expired), a new one is
//! created. Like client-go's LRU, the cache is bounded ([`CACHE_SIZE`] keys).
//!
//! Similar events are aggregated as client-go's `EventAggregator` does: once
//! [`AGGREGATE_MAX_EVENTS`] events that differ only in their message have been recorded for
//! one object, source, type and reason within [`AGGREGATE_INTERVAL`], the next ones become
//! one Event whose message is `(combined from similar events): <latest message>`, counted
//! like a repeat.
//!
//! Recording is best effort, as client-go's: a failed write is logged, never retried, and
//! never fails the caller.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};

/// How many distinct events are remembered for correlation (client-go's `maxLruCacheEntries`).
pub const CACHE_SIZE: usize = 4096;

/// How many distinct messages of similar events are recorded as they are before they are
/// combined (client-go's `defaultAggregateMaxEvents`).
pub const AGGREGATE_MAX_EVENTS: usize = 10;

/// How long similar events are remembered for aggregation (client-go's
/// `defaultAggregateIntervalInSeconds`, 10 min).
pub const AGGREGATE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// An Event's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Normal,
    Warning,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Normal => "Normal",
            Kind::Warning => "Warning",
        }
    }
}

/// Who records: `source.component` (`kubelet`, `default-scheduler`, `deployment-controller`),
/// `source.host` (the node, for kubelet) and `reportingInstance`.
#[derive(Clone, Debug, Default)]
pub struct Source {
    pub component: String,
    pub host: Option<String>,
    pub instance: Option<String>,
}

impl Source {
    /// A component with no host (controllers, the scheduler).
    pub fn component(name: &str) -> Self {
        Source {
            component: name.to_string(),
            ..Default::default()
        }
    }
}

/// One event to record.
#[derive(Clone, Debug)]
pub struct Record<'a> {
    pub involved: ObjectReference,
    pub kind: Kind,
    pub reason: &'a str,
    /// `action` (the scheduler's `Scheduling`); `None` for most components.
    pub action: Option<&'a str>,
    pub message: String,
}

/// An API error as a Go client's `err.Error()` shows it in an event message: a `Status`
/// error is its `message` (`pods "x" is forbidden: exceeded quota: …`), anything else its
/// display (kube-rs's `ApiError: … (Status { … })` is not what kube's events say).
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        e => e.to_string(),
    }
}

/// An object reference to `obj` (`involvedObject`), as `ref.GetReference` makes it.
pub fn reference<K: Resource<DynamicType = ()>>(obj: &K) -> ObjectReference {
    ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        name: Some(obj.name_any()),
        namespace: obj.namespace(),
        uid: obj.meta().uid.clone(),
        resource_version: obj.meta().resource_version.clone(),
        ..Default::default()
    }
}

/// client-go's `getEventKey`: what makes two events the same one.
fn key(source: &Source, r: &Record<'_>) -> String {
    let o = &r.involved;
    [
        source.component.as_str(),
        source.host.as_deref().unwrap_or_default(),
        o.kind.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default(),
        o.field_path.as_deref().unwrap_or_default(),
        o.uid.as_deref().unwrap_or_default(),
        o.api_version.as_deref().unwrap_or_default(),
        r.kind.as_str(),
        r.reason,
        &r.message,
    ]
    .join("\u{0}")
}

/// client-go's `EventAggregatorByReasonFunc`: what makes two events similar (everything
/// [`key`] has but the message).
fn aggregate_key(source: &Source, r: &Record<'_>) -> String {
    let o = &r.involved;
    [
        "aggregate",
        source.component.as_str(),
        source.host.as_deref().unwrap_or_default(),
        o.kind.as_deref().unwrap_or_default(),
        o.namespace.as_deref().unwrap_or_default(),
        o.name.as_deref().unwrap_or_default(),
        o.uid.as_deref().unwrap_or_default(),
        o.api_version.as_deref().unwrap_or_default(),
        r.kind.as_str(),
        r.reason,
        source.instance.as_deref().unwrap_or_default(),
    ]
    .join("\u{0}")
}

/// Similar events seen lately: their distinct messages and when the last one came.
#[derive(Clone, Debug)]
struct Similar {
    messages: std::collections::HashSet<String>,
    last: std::time::Instant,
}

/// An earlier event: its object's name and namespace, its count, and when it was last used
/// (for the bound).
#[derive(Clone, Debug)]
struct Seen {
    name: String,
    namespace: String,
    count: i32,
    used: u64,
}

#[derive(Default)]
struct Cache {
    entries: HashMap<String, Seen>,
    similar: HashMap<String, Similar>,
    clock: u64,
}

impl Cache {
    /// client-go's `EventAggregate`: notes `message` under the similar events of `agg`;
    /// true when the event is to be combined (the limit of distinct messages is reached).
    fn aggregate(&mut self, agg: &str, message: &str, now: std::time::Instant) -> bool {
        if self.similar.len() >= CACHE_SIZE && !self.similar.contains_key(agg) {
            self.similar
                .retain(|_, s| now.duration_since(s.last) <= AGGREGATE_INTERVAL);
            if self.similar.len() >= CACHE_SIZE {
                self.similar.clear();
            }
        }
        let rec = self
            .similar
            .entry(agg.to_string())
            .or_insert_with(|| Similar {
                messages: Default::default(),
                last: now,
            });
        if now.duration_since(rec.last) > AGGREGATE_INTERVAL {
            rec.messages.clear();
        }
        rec.messages.insert(message.to_string());
        rec.last = now;
        if rec.messages.len() < AGGREGATE_MAX_EVENTS {
            return false;
        }
        // Keep the set at its limit (client-go's `PopAny`).
        if let Some(any) = rec.messages.iter().next().cloned() {
            rec.messages.remove(&any);
        }
        true
    }

    fn get(&mut self, key: &str) -> Option<Seen> {
        self.clock += 1;
        let clock = self.clock;
        self.entries.get_mut(key).map(|s| {
            s.used = clock;
            s.clone()
        })
    }

    fn put(&mut self, key: String, mut seen: Seen) {
        self.clock += 1;
        seen.used = self.clock;
        if self.entries.len() >= CACHE_SIZE && !self.entries.contains_key(&key) {
            // Drop the least recently used eighth at once (amortised, as an LRU would).
            let mut ages: Vec<u64> = self.entries.values().map(|s| s.used).collect();
            ages.sort_unstable();
            let cutoff = ages[CACHE_SIZE / 8];
            self.entries.retain(|_, s| s.used > cutoff);
        }
        self.entries.insert(key, seen);
    }
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

fn with_cache<T>(f: impl FnOnce(&mut Cache) -> T) -> T {
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(Cache::default))
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Records `r` from `source`: patches the count of the same event recorded before, or creates
/// a new Event in the involved object's namespace (`default` for cluster-scoped objects, as
/// kube does).
pub async fn record(client: &Client, source: &Source, mut r: Record<'_>) {
    let ns = r
        .involved
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut key = key(source, &r);
    let agg = aggregate_key(source, &r);
    if with_cache(|c| c.aggregate(&agg, &r.message, std::time::Instant::now())) {
        r.message = format!("(combined from similar events): {}", r.message);
        key = agg;
    }
    let api: Api<Event> = Api::namespaced(client.clone(), &ns);
    if let Some(seen) = with_cache(|c| c.get(&key)) {
        let count = seen.count + 1;
        let patch =
            serde_json::json!({"count": count, "lastTimestamp": now(), "message": r.message});
        let events: Api<Event> = Api::namespaced(client.clone(), &seen.namespace);
        match events
            .patch(&seen.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                with_cache(|c| c.put(key, Seen { count, ..seen }));
                return;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                tracing::debug!("{}: updating event {}: {e}", source.component, seen.name);
                return;
            }
        }
    }
    let at = now();
    let nanos = at.0.as_nanosecond();
    let object = r.involved.name.clone().unwrap_or_default();
    let name = format!("{object}.{nanos:x}");
    let ev = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            ..Default::default()
        },
        involved_object: r.involved,
        reason: Some(r.reason.to_string()),
        message: Some(r.message),
        type_: Some(r.kind.as_str().into()),
        action: r.action.map(String::from),
        source: Some(EventSource {
            component: Some(source.component.clone()),
            host: source.host.clone(),
        }),
        first_timestamp: Some(at.clone()),
        last_timestamp: Some(at),
        count: Some(1),
        reporting_component: Some(source.component.clone()),
        reporting_instance: Some(
            source
                .instance
                .clone()
                .or_else(|| source.host.clone())
                .unwrap_or_default(),
        ),
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ev).await {
        Ok(_) => with_cache(|c| {
            c.put(
                key,
                Seen {
                    name,
                    namespace: ns,
                    count: 1,
                    used: 0,
                },
            )
        }),
        Err(e) => tracing::debug!("{}: recording {}: {e}", source.component, r.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(message: &str) -> Record<'static> {
        Record {
            involved: ObjectReference {
                kind: Some("Pod".into()),
                name: Some("web-1".into()),
                namespace: Some("default".into()),
                uid: Some("u1".into()),
                ..Default::default()
            },
            kind: Kind::Warning,
            reason: "BackOff",
            action: None,
            message: message.into(),
        }
    }

    #[test]
    fn the_same_event_has_one_key_and_another_message_another() {
        let s = Source::component("kubelet");
        assert_eq!(key(&s, &rec("a")), key(&s, &rec("a")));
        assert_ne!(key(&s, &rec("a")), key(&s, &rec("b")));
        assert_ne!(
            key(&s, &rec("a")),
            key(&Source::component("default-scheduler"), &rec("a"))
        );
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_recent_keys() {
        let mut c = Cache::default();
        let seen = |i: usize| Seen {
            name: format!("e{i}"),
            namespace: "default".into(),
            count: 1,
            used: 0,
        };
        for i in 0..CACHE_SIZE {
            c.put(format!("k{i}"), seen(i));
        }
        // k0 used again: it survives the eviction the next key causes.
        assert!(c.get("k0").is_some());
        c.put("new".into(), seen(0));
        assert!(c.entries.len() <= CACHE_SIZE);
        assert!(c.get("k0").is_some() && c.get("new").is_some());
        assert!(c.get("k1").is_none());
    }

    #[test]
    fn similar_events_are_combined_after_ten_messages() {
        let s = Source::component("kubelet");
        let mut c = Cache::default();
        let t0 = std::time::Instant::now();
        let agg = aggregate_key(&s, &rec("m0"));
        assert_eq!(agg, aggregate_key(&s, &rec("other message")));
        assert_ne!(agg, key(&s, &rec("m0")));
        let combined: Vec<bool> = (0..12)
            .map(|i| c.aggregate(&agg, &format!("m{i}"), t0))
            .collect();
        assert_eq!(
            combined.iter().position(|b| *b),
            Some(AGGREGATE_MAX_EVENTS - 1)
        );
        assert!(combined[AGGREGATE_MAX_EVENTS..].iter().all(|b| *b));
        // A repeat of a message already seen does not count twice.
        let mut fresh = Cache::default();
        assert!((0..20).all(|_| !fresh.aggregate(&agg, "same", t0)));
        // After the interval the record starts over.
        let later = t0 + AGGREGATE_INTERVAL + std::time::Duration::from_secs(1);
        assert!(!c.aggregate(&agg, "late", later));
    }
}
