//! The daemon's event bus: Docker's `/events` messages
//! ([EventMessage](https://docs.docker.com/reference/api/engine/version/v1.47/#tag/System/operation/SystemEvents)).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::Value;
use tokio::sync::broadcast;

/// How many past events `/events?since=` can replay (Docker keeps 1024 too).
const HISTORY: usize = 1024;

/// One event, as Docker sends it.
#[derive(Debug, Clone)]
pub struct Event {
    pub typ: &'static str,
    pub action: String,
    pub actor_id: String,
    pub attributes: BTreeMap<String, String>,
    /// Unix time in nanoseconds.
    pub time_nano: i64,
}

impl Event {
    /// Docker's JSON shape, including the legacy `status`/`id`/`from` fields.
    pub fn to_json(&self) -> Value {
        crate::wire::event(self)
    }
}

/// Publishes events to `/events` subscribers and keeps a short history.
pub struct EventBus {
    tx: broadcast::Sender<Event>,
    history: Mutex<VecDeque<Event>>,
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(4096);
        EventBus {
            tx,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Publishes an event now.
    pub fn emit(
        &self,
        typ: &'static str,
        action: &str,
        actor_id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let time_nano = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
        let event = Event {
            typ,
            action: action.to_string(),
            actor_id: actor_id.to_string(),
            attributes,
            time_nano,
        };
        {
            let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(event.clone());
        }
        let _ = self.tx.send(event);
    }

    /// Subscribes, returning past events (oldest first) and a live receiver.
    pub fn subscribe(&self) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.tx.subscribe();
        (history.iter().cloned().collect(), rx)
    }
}

/// Parsed `filters` of `/events`: `type`, `event`, `container`, `image`, `label`.
#[derive(Debug, Default)]
pub struct EventFilter {
    pub filters: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    pub fn matches(&self, e: &Event) -> bool {
        for (key, values) in &self.filters {
            if values.is_empty() {
                continue;
            }
            let ok = match key.as_str() {
                "type" => values.iter().any(|v| v == e.typ),
                "event" => values
                    .iter()
                    .any(|v| *v == e.action || e.action.starts_with(&format!("{v}:"))),
                "container" => {
                    e.typ == "container"
                        && values.iter().any(|v| {
                            e.actor_id.starts_with(v.as_str())
                                || e.attributes.get("name") == Some(v)
                        })
                }
                "image" => values.iter().any(|v| {
                    e.attributes.get("image") == Some(v) || (e.typ == "image" && e.actor_id == *v)
                }),
                // dockerd's `MatchKVList`: every label filter must match.
                "label" => values.iter().all(|v| match v.split_once('=') {
                    Some((k, val)) => e.attributes.get(k).map(String::as_str) == Some(val),
                    None => e.attributes.contains_key(v.as_str()),
                }),
                _ => true,
            };
            if !ok {
                return false;
            }
        }
        true
    }
}
