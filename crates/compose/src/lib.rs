//! Compose files loaded as compose-go (the reference docker compose v2 uses) loads them:
//! discovery ([`discovery`]), `.env` ([`dotenv`]), YAML ([`yaml`]), interpolation
//! ([`interpolate`]), `include`, merging several files ([`merge`]), `extends` ([`extends`]),
//! profiles ([`profiles`]), and normalisation ([`normalize`]) into the typed [`model::Project`],
//! rendered back by [`render`] as `docker compose config` does.
//! Spec: <https://github.com/compose-spec/compose-spec/blob/main/spec.md>.

pub mod convert;
pub mod discovery;
pub mod dotenv;
pub mod extends;
pub mod interpolate;
pub mod merge;
pub mod model;
pub mod normalize;
pub mod plan;
pub mod profiles;
pub mod render;
pub mod shorthand;
pub mod yaml;

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How to find and load the project: the global flags of `docker compose` and the environment.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Working directory (absolute) the command runs in.
    pub cwd: PathBuf,
    /// `-f` values, in order.
    pub files: Vec<String>,
    /// `-p`.
    pub project_name: Option<String>,
    /// `--project-directory`.
    pub project_directory: Option<String>,
    /// `--env-file` values, in order (default: `<project dir>/.env` when it exists).
    pub env_files: Vec<String>,
    /// `--profile` values.
    pub profiles: Vec<String>,
    /// Services named on the command line (their profiles become active).
    pub services: Vec<String>,
    /// The process environment (`COMPOSE_*` variables are read from it).
    pub env: BTreeMap<String, String>,
}

/// A loaded project with the warnings compose-go would print.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The normalised project.
    pub project: model::Project,
    /// Warnings in the order they arose.
    pub warnings: Vec<String>,
}

/// Any loading failure; each variant carries its module's error.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Discovery or project name.
    #[error(transparent)]
    Discovery(#[from] discovery::DiscoveryError),
    /// A file could not be read.
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    /// An env file that does not exist.
    #[error("couldn't find env file: {0}")]
    EnvFileMissing(String),
    /// An env file that does not parse.
    #[error("failed to read {path}: {error}")]
    Dotenv {
        path: String,
        error: dotenv::DotenvError,
    },
    /// YAML syntax.
    #[error(transparent)]
    Yaml(#[from] yaml::YamlError),
    /// Interpolation.
    #[error(transparent)]
    Interpolate(#[from] interpolate::InterpolateError),
    /// Merging.
    #[error(transparent)]
    Merge(#[from] merge::MergeError),
    /// `extends`.
    #[error(transparent)]
    Extends(#[from] extends::ExtendsError),
    /// `include` brings a resource that differs from one already defined.
    #[error("{kind}.{name} conflicts with imported resource")]
    IncludeConflict { kind: String, name: String },
    /// An included file includes itself through a chain.
    #[error("include cycle detected:\n{0}")]
    IncludeCycle(String),
    /// No content in the files.
    #[error("empty compose file")]
    Empty,
    /// An `include` entry without a path.
    #[error("include: each entry needs a path")]
    IncludeMalformed,
    /// Profiles.
    #[error(transparent)]
    Profiles(#[from] profiles::ProfileError),
    /// Validation and normalisation.
    #[error(transparent)]
    Normalize(#[from] normalize::NormalizeError),
}

fn is_true(v: Option<&String>) -> bool {
    v.is_some_and(|v| {
        matches!(
            v.to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "y" | "on"
        )
    })
}

/// The environment after `.env` files: the OS environment wins over file values.
pub fn resolve_environment(
    opts: &Options,
    project_dir: &Path,
) -> Result<BTreeMap<String, String>, LoadError> {
    let mut env = opts.env.clone();
    if is_true(opts.env.get("COMPOSE_DISABLE_ENV_FILE")) {
        return Ok(env);
    }
    let files: Vec<(PathBuf, bool)> = if opts.env_files.is_empty() {
        vec![(project_dir.join(".env"), false)]
    } else {
        opts.env_files
            .iter()
            .map(|f| (discovery::absolute(&opts.cwd, Path::new(f)), true))
            .collect()
    };
    let mut from_files: BTreeMap<String, String> = BTreeMap::new();
    for (path, required) in files {
        let shown = path.display().to_string();
        let content = match std::fs::read_to_string(&path) {
            Ok(c) => c,
            Err(_) if !required => continue,
            Err(_) => return Err(LoadError::EnvFileMissing(shown)),
        };
        let os = |k: &str| opts.env.get(k).cloned();
        let pairs = dotenv::parse_with(
            &content,
            &|k| os(k).or_else(|| from_files.get(k).cloned()),
            &os,
        )
        .map_err(|error| LoadError::Dotenv { path: shown, error })?;
        from_files.extend(pairs);
    }
    for (k, v) in from_files {
        env.entry(k).or_insert(v);
    }
    Ok(env)
}

struct FileLoader<'a> {
    env: &'a BTreeMap<String, String>,
    warnings: std::cell::RefCell<Vec<String>>,
    /// Files being included, outermost first (for include cycles).
    stack: std::cell::RefCell<Vec<PathBuf>>,
}

/// compose-go's `projectName` pre-pass: the last non-empty top-level `name` of the files,
/// interpolated and normalised.
fn name_from_files(
    files: &[PathBuf],
    env: &BTreeMap<String, String>,
) -> Result<Option<String>, LoadError> {
    let mut name = None;
    for f in files {
        let shown = f.display().to_string();
        let src = std::fs::read_to_string(f).map_err(|error| LoadError::Read {
            path: shown.clone(),
            error,
        })?;
        // a syntax error is reported by the full load
        let Ok(doc) = yaml::parse(&src, &shown) else {
            continue;
        };
        if let Some(n) = doc
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            name = Some(n.to_string());
        }
    }
    let Some(n) = name else { return Ok(None) };
    let mut v = Value::Object(Map::from_iter([("name".to_string(), Value::String(n))]));
    interpolate::interpolate(&mut v, "", &|k| env.get(k).cloned(), &mut Vec::new())?;
    let n = discovery::normalize_project_name(v["name"].as_str().unwrap_or_default());
    Ok((!n.is_empty()).then_some(n))
}

impl FileLoader<'_> {
    /// Read, parse, check keys, interpolate and shape one file, then (with `full`) resolve its
    /// `extends` and apply its `include`s, in compose-go's order.
    fn load(&self, path: &Path, full: bool) -> Result<Value, LoadError> {
        let shown = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|error| LoadError::Read {
            path: shown.clone(),
            error,
        })?;
        let mut doc = yaml::parse(&src, &shown)?;
        if let Some(obj) = doc.as_object_mut() {
            if obj.remove("version").is_some() {
                self.warnings.borrow_mut().push(format!(
                    "{shown}: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion"
                ));
            }
            obj.retain(|k, _| !k.starts_with("x-"));
        }
        normalize::validate_keys(&merge::strip_tags(doc.clone()), &shown)?;
        let lookup = |k: &str| self.env.get(k).cloned();
        interpolate::interpolate(&mut doc, "", &lookup, &mut self.warnings.borrow_mut())?;
        let mut doc = merge::shape(doc);
        if let Some(Value::Object(services)) = doc.get_mut("services") {
            for svc in services.values_mut() {
                if let Value::Object(m) = svc {
                    m.retain(|k, _| !k.starts_with("x-"));
                }
            }
        }
        if !full {
            return Ok(doc);
        }
        extends::resolve(&mut doc, path, &|p| {
            self.load(p, false)
                .map_err(|e| extends::ExtendsError::Load(e.to_string()))
        })?;
        if let Some(include) = doc.as_object_mut().and_then(|o| o.remove("include")) {
            self.stack.borrow_mut().push(path.to_path_buf());
            let r = self.include(&mut doc, &include, path.parent().unwrap_or(Path::new("/")));
            self.stack.borrow_mut().pop();
            r?;
        }
        Ok(doc)
    }

    fn include(&self, doc: &mut Value, include: &Value, dir: &Path) -> Result<(), LoadError> {
        for entry in include.as_array().cloned().unwrap_or_default() {
            let paths: Vec<String> = match &entry {
                Value::String(s) => vec![s.clone()],
                Value::Object(m) => match m.get("path") {
                    Some(Value::String(s)) => vec![s.clone()],
                    Some(Value::Array(a)) => a
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    _ => return Err(LoadError::IncludeMalformed),
                },
                _ => return Err(LoadError::IncludeMalformed),
            };
            let mut imported: Option<Value> = None;
            for p in &paths {
                let abs = discovery::absolute(dir, Path::new(p));
                if self.stack.borrow().contains(&abs) {
                    let stack = self.stack.borrow();
                    let mut chain: Vec<String> =
                        stack.iter().map(|p| p.display().to_string()).collect();
                    chain.push(abs.display().to_string());
                    return Err(LoadError::IncludeCycle(format!(
                        "{}\n include {}",
                        chain[0],
                        chain[1..].join("\n include ")
                    )));
                }
                let mut sub = self.load(&abs, true)?;
                let sub_dir = abs.parent().unwrap_or(Path::new("/")).to_path_buf();
                rebase_services(&mut sub, &sub_dir);
                imported = Some(match imported {
                    None => sub,
                    Some(b) => merge::merge(b, sub)?,
                });
            }
            let Some(imported) = imported else { continue };
            for kind in ["services", "networks", "volumes", "secrets", "configs"] {
                let Some(Value::Object(from)) = imported.get(kind) else {
                    continue;
                };
                let target = doc
                    .as_object_mut()
                    .expect("mapping")
                    .entry(kind)
                    .or_insert_with(|| Value::Object(Map::new()));
                if target.is_null() {
                    *target = Value::Object(Map::new());
                }
                let to = target.as_object_mut().expect("mapping");
                for (name, v) in from {
                    if let Some(existing) = to.get(name) {
                        if existing == v {
                            continue;
                        }
                        return Err(LoadError::IncludeConflict {
                            kind: kind.into(),
                            name: name.clone(),
                        });
                    }
                    to.insert(name.clone(), v.clone());
                }
            }
        }
        Ok(())
    }
}

/// Relative build contexts, env files and bind sources of an included file resolve against
/// that file's directory.
fn rebase_services(doc: &mut Value, dir: &Path) {
    if let Some(Value::Object(services)) = doc.get_mut("services") {
        for svc in services.values_mut() {
            extends::rebase(svc, dir);
        }
    }
    for kind in ["secrets", "configs"] {
        if let Some(Value::Object(objs)) = doc.get_mut(kind) {
            for o in objs.values_mut() {
                if let Some(Value::String(f)) = o.get_mut("file") {
                    if !f.starts_with('/') && !f.starts_with('~') {
                        *f = discovery::absolute(dir, Path::new(f.as_str()))
                            .display()
                            .to_string();
                    }
                }
            }
        }
    }
}

/// Load the project as `docker compose` would with these flags and this environment.
pub fn load(opts: &Options) -> Result<Loaded, LoadError> {
    // compose-go's working directory when the environment is read: --project-directory, else
    // the first -f file's directory, else the current directory (before any search upwards)
    let working_dir = match (&opts.project_directory, opts.files.first()) {
        (Some(d), _) => discovery::absolute(&opts.cwd, Path::new(d)),
        (None, Some(f)) => discovery::absolute(&opts.cwd, Path::new(f))
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf(),
        (None, None) => opts.cwd.clone(),
    };
    // .env may set COMPOSE_FILE, COMPOSE_PROFILES, COMPOSE_PROJECT_NAME...
    let mut env = resolve_environment(opts, &working_dir)?;
    let search_from = match &opts.project_directory {
        Some(_) => working_dir.clone(),
        None => opts.cwd.clone(),
    };
    let found = discovery::find_files(
        &search_from,
        &opts.files,
        env.get("COMPOSE_FILE").map(String::as_str),
        env.get("COMPOSE_PATH_SEPARATOR").map(String::as_str),
    )?;
    let mut warnings = found.warnings.clone();
    let project_dir = match &opts.project_directory {
        Some(_) => working_dir,
        None => found.files[0]
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf(),
    };
    let explicit = opts
        .project_name
        .clone()
        .or_else(|| env.get("COMPOSE_PROJECT_NAME").cloned())
        .filter(|n| !n.is_empty());
    let yaml_name = match explicit {
        Some(_) => None,
        None => name_from_files(&found.files, &env)?,
    };
    let name = discovery::project_name(explicit.as_deref(), yaml_name.as_deref(), &project_dir)?;
    // compose-go makes the name available to interpolation
    env.insert("COMPOSE_PROJECT_NAME".into(), name.clone());
    let loader = FileLoader {
        env: &env,
        warnings: Default::default(),
        stack: Default::default(),
    };
    let mut doc: Option<Value> = None;
    for f in &found.files {
        let d = loader.load(f, true)?;
        doc = Some(match doc {
            None => merge::strip_tags(d),
            Some(b) => merge::merge(b, d)?,
        });
    }
    let mut doc = doc.unwrap_or_else(|| Value::Object(Map::new()));
    if doc.as_object().is_none_or(|m| m.is_empty()) {
        return Err(LoadError::Empty);
    }
    merge::dedupe_document(&mut doc);
    warnings.extend(loader.warnings.borrow_mut().drain(..));
    let active = profiles::active(
        &opts.profiles,
        env.get("COMPOSE_PROFILES").map(String::as_str),
    );
    let services = doc
        .get("services")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let (on, off, active) = profiles::select(services, &active, &opts.services)?;
    let cx = normalize::Context {
        project: &name,
        dir: &project_dir,
        env: &env,
    };
    let mut project = normalize::project(&doc, &on, &off, &cx)?;
    project.profiles = active;
    project.config_files = found
        .files
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    project.environment = env;
    Ok(Loaded { project, warnings })
}
