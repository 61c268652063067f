//! `extends`: a service built on another one, in the same file or in another file (compose-go's
//! `loader/extends.go`). The base is resolved first (it may extend in turn), its relative paths
//! are rebased when it comes from another file, then the service is merged onto it with the
//! merge rules. A cycle is an error worded as compose-go words it.

use crate::discovery::absolute;
use crate::merge::{self, MergeError};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

/// An `extends` failure.
#[derive(Debug, thiserror::Error)]
pub enum ExtendsError {
    /// The named base service does not exist.
    #[error("cannot extend service {service:?} in {file}: service {base:?} not found")]
    NotFound {
        service: String,
        file: String,
        base: String,
    },
    /// `extends` that is neither a string nor a mapping with `service`.
    #[error("services.{service}.extends must be a string or a mapping with a service key")]
    Malformed { service: String },
    /// A service extends itself through a chain.
    #[error("Circular reference:\n{}", .chain.join("\n"))]
    Cycle { chain: Vec<String> },
    /// The other file could not be loaded.
    #[error("{0}")]
    Load(String),
    /// Merging the service onto its base failed.
    #[error(transparent)]
    Merge(#[from] MergeError),
}

/// Loads another compose file (parsed, interpolated, shaped) for `extends.file`.
pub type FileLoader<'a> = dyn Fn(&Path) -> Result<Value, ExtendsError> + 'a;

/// Resolve every `extends` in `doc["services"]`; `file` is the path of the file they come from.
pub fn resolve(doc: &mut Value, file: &Path, load: &FileLoader) -> Result<(), ExtendsError> {
    let Some(Value::Object(services)) = doc.get("services").cloned() else {
        return Ok(());
    };
    let mut out = services.clone();
    for name in services.keys() {
        let resolved = apply(name, &services, file, &mut Vec::new(), load)?;
        out.insert(name.clone(), resolved);
    }
    doc["services"] = Value::Object(out);
    Ok(())
}

fn apply(
    name: &str,
    services: &Map<String, Value>,
    file: &Path,
    tracker: &mut Vec<(PathBuf, String)>,
    load: &FileLoader,
) -> Result<Value, ExtendsError> {
    let service = services.get(name).cloned().unwrap_or(Value::Null);
    let Some(ext) = service.get("extends").cloned() else {
        return Ok(service);
    };
    let key = (file.to_path_buf(), name.to_string());
    if tracker.contains(&key) {
        let fmt = |(f, s): &(PathBuf, String)| format!("{s} in {}", f.display());
        let mut chain = vec![format!("  {}", fmt(&tracker[0]))];
        for r in tracker[1..].iter().chain(std::iter::once(&key)) {
            chain.push(format!("  extends {}", fmt(r)));
        }
        return Err(ExtendsError::Cycle { chain });
    }
    tracker.push(key);
    let (base_name, other) = match &ext {
        Value::String(s) => (s.clone(), None),
        Value::Object(m) => match m.get("service").and_then(Value::as_str) {
            Some(s) => (
                s.to_string(),
                m.get("file").and_then(Value::as_str).map(str::to_string),
            ),
            None => {
                return Err(ExtendsError::Malformed {
                    service: name.to_string(),
                })
            }
        },
        _ => {
            return Err(ExtendsError::Malformed {
                service: name.to_string(),
            })
        }
    };
    let not_found = |f: &Path| ExtendsError::NotFound {
        service: name.to_string(),
        file: f.display().to_string(),
        base: base_name.clone(),
    };
    let mut base = match other {
        None => {
            if !services.contains_key(&base_name) {
                return Err(not_found(file));
            }
            apply(&base_name, services, file, tracker, load)?
        }
        Some(f) => {
            let dir = file.parent().unwrap_or(Path::new("/"));
            let other_path = absolute(dir, Path::new(&f));
            let doc = load(&other_path)?;
            let other_services = doc
                .get("services")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if !other_services.contains_key(&base_name) {
                return Err(not_found(&other_path));
            }
            let mut b = apply(&base_name, &other_services, &other_path, tracker, load)?;
            rebase(&mut b, other_path.parent().unwrap_or(Path::new("/")));
            b
        }
    };
    tracker.pop();
    if let Value::Object(m) = &mut base {
        m.remove("extends");
    }
    let mut svc = service;
    if let Value::Object(m) = &mut svc {
        m.remove("extends");
    }
    let wrap = |v: Value| {
        Value::Object(Map::from_iter([(
            "services".to_string(),
            Value::Object(Map::from_iter([(name.to_string(), v)])),
        )]))
    };
    let merged = merge::merge(wrap(base), wrap(svc))?;
    Ok(merged["services"][name].clone())
}

fn is_relative_local(s: &str) -> bool {
    s == "." || s == ".." || s.starts_with("./") || s.starts_with("../")
}

/// Make a base service's relative paths (build context, env_file, bind sources) absolute
/// against the directory of the file it was declared in.
pub(crate) fn rebase(svc: &mut Value, dir: &Path) {
    let abs = |s: &str| absolute(dir, Path::new(s)).display().to_string();
    if let Some(ctx) = svc.pointer_mut("/build/context") {
        if let Some(s) = ctx.as_str() {
            if !s.contains("://") && !s.starts_with("git@") && !s.starts_with('/') {
                *ctx = Value::String(abs(s));
            }
        }
    }
    match svc.get_mut("env_file") {
        Some(Value::String(s)) => *s = abs(s),
        Some(Value::Array(items)) => {
            for it in items {
                match it {
                    Value::String(s) => *s = abs(s),
                    Value::Object(m) => {
                        if let Some(Value::String(p)) = m.get_mut("path") {
                            *p = abs(p);
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    if let Some(Value::Array(vols)) = svc.get_mut("volumes") {
        for v in vols {
            match v {
                Value::String(s) => {
                    if let Some((src, rest)) = s.split_once(':') {
                        if is_relative_local(src) {
                            *s = format!("{}:{rest}", abs(src));
                        }
                    }
                }
                Value::Object(m) if m.get("type").and_then(Value::as_str) == Some("bind") => {
                    if let Some(Value::String(src)) = m.get_mut("source") {
                        if !src.starts_with('/') && !src.starts_with('~') {
                            *src = abs(src);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{merge::shape, yaml::parse};
    use serde_json::json;

    fn no_load(_: &Path) -> Result<Value, ExtendsError> {
        Err(ExtendsError::Load("unexpected".into()))
    }

    #[test]
    fn same_file_chain() {
        let mut d = shape(parse("services:\n  base:\n    image: b\n    environment: {A: 1}\n    command: [x]\n  mid:\n    extends: base\n    environment: {B: 2}\n  web:\n    extends: {service: mid}\n    command: [y]\n", "f").unwrap());
        resolve(&mut d, Path::new("/p/compose.yaml"), &no_load).unwrap();
        assert_eq!(
            d["services"]["web"],
            json!({"image": "b", "environment": {"A": 1, "B": 2}, "command": ["y"]})
        );
        assert_eq!(d["services"]["base"]["image"], "b");
    }

    #[test]
    fn other_file_rebased() {
        let mut d = shape(parse("services:\n  web:\n    extends: {file: common/base.yml, service: app}\n    image: w\n", "f").unwrap());
        let load = |p: &Path| -> Result<Value, ExtendsError> {
            assert_eq!(p, Path::new("/p/common/base.yml"));
            Ok(shape(parse("services:\n  app:\n    build: ./app\n    env_file: [a.env]\n    volumes: ['./data:/data', 'named:/n']\n", "b").unwrap()))
        };
        resolve(&mut d, Path::new("/p/compose.yaml"), &load).unwrap();
        assert_eq!(
            d["services"]["web"],
            json!({"build": {"context": "/p/common/app"}, "env_file": ["/p/common/a.env"],
                   "volumes": ["/p/common/data:/data", "named:/n"], "image": "w"})
        );
    }

    #[test]
    fn errors() {
        let mut d = shape(
            parse(
                "services:\n  a:\n    extends: b\n  b:\n    extends: a\n",
                "f",
            )
            .unwrap(),
        );
        let e = resolve(&mut d, Path::new("/p/compose.yaml"), &no_load).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Circular reference:\n  a in /p/compose.yaml\n  extends b in /p/compose.yaml\n  extends a in /p/compose.yaml"
        );
        let mut d = shape(parse("services:\n  a:\n    extends: nope\n", "f").unwrap());
        let e = resolve(&mut d, Path::new("/p/compose.yaml"), &no_load).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot extend service \"a\" in /p/compose.yaml: service \"nope\" not found"
        );
    }
}
