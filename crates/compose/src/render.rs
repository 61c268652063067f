//! `docker compose config` output: the normalised project as YAML (yaml.v3's style as
//! compose-go marshals it: 2-space indent, sequences indented under their key, fields in
//! compose-go's order, maps sorted) or JSON (Go's `json.MarshalIndent` with two spaces, where
//! `command`, `entrypoint` and `environment` appear as `null` when unset).

use crate::model::Project;
use std::cell::Cell;

/// Output format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (the default of `docker compose config`).
    Yaml,
    /// JSON (`--format json`).
    Json,
}

/// A rendering failure (a serializer bug; the model always serialises).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// YAML serialisation.
    #[error("yaml: {0}")]
    Yaml(String),
    /// JSON serialisation.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

thread_local! {
    static YAML: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current serialisation is YAML (JSON keeps compose-go's `null` fields).
pub(crate) fn rendering_yaml() -> bool {
    YAML.with(Cell::get)
}

/// Serde helper: skip a `None` when rendering YAML, keep `null` in JSON.
pub(crate) fn skip_none_in_yaml<T>(v: &Option<T>) -> bool {
    v.is_none() && rendering_yaml()
}

/// Serde helper: skip an empty map when rendering YAML, keep `null` in JSON.
pub(crate) fn skip_empty_in_yaml<K, V>(v: &std::collections::BTreeMap<K, V>) -> bool {
    v.is_empty() && rendering_yaml()
}

/// Serde helper: an empty map as `null` (Go's nil map).
pub(crate) fn nil_if_empty<S: serde::Serializer, K: serde::Serialize, V: serde::Serialize>(
    v: &std::collections::BTreeMap<K, V>,
    s: S,
) -> Result<S::Ok, S::Error> {
    if v.is_empty() {
        s.serialize_none()
    } else {
        serde::Serialize::serialize(v, s)
    }
}

struct YamlGuard;
impl Drop for YamlGuard {
    fn drop(&mut self) {
        YAML.with(|c| c.set(false));
    }
}

/// Render `project` as `docker compose config` prints it.
pub fn render(project: &Project, format: Format) -> Result<String, RenderError> {
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(project)? + "\n"),
        Format::Yaml => {
            YAML.with(|c| c.set(true));
            let _guard = YamlGuard;
            let mut opts = serde_saphyr::SerializerOptions::default();
            opts.compact_list_indent = false;
            opts.indent_step = 2;
            // YAML 1.2 quoting like yaml.v3 (`9.9.9.9` stays plain)
            opts.yaml_12 = true;
            opts.no_lang_directive = true;
            opts.folded_wrap_chars = usize::MAX / 2;
            opts.min_fold_chars = usize::MAX / 2;
            serde_saphyr::to_string_with_options(project, opts)
                .map_err(|e| RenderError::Yaml(e.to_string()))
        }
    }
}
