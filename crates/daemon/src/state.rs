//! Shared daemon state handed to every handler.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use barge_container::{AttachPoint, Container, Containers};
use barge_image::ImageStore;
use tokio::sync::oneshot;

use crate::events::EventBus;

/// Everything handlers need. Cheap to clone (`Arc` inside).
#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub images: Arc<ImageStore>,
    pub containers: Arc<Containers>,
    pub networks: Arc<barge_network::Networks>,
    pub events: EventBus,
    /// Attach requests that arrived before `start` (docker run attaches first, then starts):
    /// the start handler hands each one the attach point once the process exists.
    pub pending_attach: Mutex<HashMap<String, Vec<oneshot::Sender<AttachPoint>>>>,
    pub data_root: PathBuf,
    pub runtimes: BTreeMap<String, PathBuf>,
    /// Leading arguments per runtime (`barge` → `["runtime"]`).
    pub runtime_args: BTreeMap<String, Vec<String>>,
    pub default_runtime: String,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Emits a container event with Docker's usual attributes (`image`, `name`, labels).
    pub fn container_event(&self, action: &str, c: &Container, extra: &[(&str, String)]) {
        let mut attrs: BTreeMap<String, String> = c.config.labels.clone().into_iter().collect();
        attrs.insert("image".into(), c.options.image.clone());
        attrs.insert("name".into(), c.name.clone());
        for (k, v) in extra {
            attrs.insert((*k).to_string(), v.clone());
        }
        self.events.emit("container", action, &c.id, attrs);
    }

    /// Emits an image event (`load`, `tag`, `untag`, `delete`, `import`, `save`).
    pub fn image_event(&self, action: &str, id: &str, name: &str) {
        let mut attrs = BTreeMap::new();
        attrs.insert("name".to_string(), name.to_string());
        self.events.emit("image", action, id, attrs);
    }
}
