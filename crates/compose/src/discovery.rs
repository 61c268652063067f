//! Which compose files to load, from where, and under which project name — compose-go's
//! `cli` options: `-f` (repeatable), `COMPOSE_FILE` split on `COMPOSE_PATH_SEPARATOR`, else the
//! default names searched in the working directory and then its parents, plus an override file
//! next to the one found; the project directory; the project name and its normalisation.

use std::path::{Path, PathBuf};

/// compose-go's default file names, in the order it looks for them.
pub const DEFAULT_FILE_NAMES: [&str; 4] = [
    "compose.yaml",
    "compose.yml",
    "docker-compose.yml",
    "docker-compose.yaml",
];
/// compose-go's default override file names, in the order it looks for them.
pub const DEFAULT_OVERRIDE_FILE_NAMES: [&str; 4] = [
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
];

/// A discovery or naming failure.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DiscoveryError {
    /// No `-f`, no `COMPOSE_FILE`, and no default file here or in any parent.
    #[error("no configuration file provided: not found")]
    NotFound,
    /// An explicitly named file that does not exist.
    #[error("open {0}: no such file or directory")]
    Missing(String),
    /// `-p`/`COMPOSE_PROJECT_NAME`/`name:` not in normal form.
    #[error("invalid project name {0:?}: must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number")]
    InvalidProjectName(String),
    /// The directory name normalises to nothing.
    #[error("project name must not be empty")]
    EmptyProjectName,
}

/// The files found, with the warnings compose-go would print.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// Absolute paths, main file first.
    pub files: Vec<PathBuf>,
    /// Warnings (several candidate names in one directory).
    pub warnings: Vec<String>,
}

/// Resolve the files to load. `explicit` are the `-f` values (relative to `cwd`); when empty,
/// `compose_file`/`separator` (`COMPOSE_FILE`, `COMPOSE_PATH_SEPARATOR`, default `:`) are used;
/// when that is unset too, the default names are searched from `cwd` upwards.
pub fn find_files(
    cwd: &Path,
    explicit: &[String],
    compose_file: Option<&str>,
    separator: Option<&str>,
) -> Result<Found, DiscoveryError> {
    let mut named: Vec<String> = explicit.to_vec();
    if named.is_empty() {
        if let Some(cf) = compose_file.filter(|s| !s.is_empty()) {
            let sep = separator.filter(|s| !s.is_empty()).unwrap_or(":");
            named = cf
                .split(sep)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
    }
    if !named.is_empty() {
        let mut files = Vec::new();
        for f in named {
            let p = absolute(cwd, Path::new(&f));
            if !p.exists() {
                return Err(DiscoveryError::Missing(p.display().to_string()));
            }
            files.push(p);
        }
        return Ok(Found {
            files,
            warnings: Vec::new(),
        });
    }
    let mut dir = Some(cwd.to_path_buf());
    while let Some(d) = dir {
        let mut found = Found::default();
        if let Some(main) = pick(&d, &DEFAULT_FILE_NAMES, &mut found.warnings) {
            found.files.push(main);
            if let Some(o) = pick(&d, &DEFAULT_OVERRIDE_FILE_NAMES, &mut found.warnings) {
                found.files.push(o);
            }
            return Ok(found);
        }
        dir = d.parent().map(Path::to_path_buf);
    }
    Err(DiscoveryError::NotFound)
}

fn pick(dir: &Path, names: &[&str], warnings: &mut Vec<String>) -> Option<PathBuf> {
    let present: Vec<PathBuf> = names
        .iter()
        .map(|n| dir.join(n))
        .filter(|p| p.is_file())
        .collect();
    if present.len() > 1 {
        let list: Vec<String> = present.iter().map(|p| p.display().to_string()).collect();
        warnings.push(format!(
            "Found multiple config files with supported names: {}",
            list.join(", ")
        ));
        warnings.push(format!("Using {}", list[0]));
    }
    present.into_iter().next()
}

/// `p` made absolute against `cwd`, with `.` and `..` components folded lexically.
pub fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// compose-go's `NormalizeProjectName`: lowercase, keep only `[a-z0-9_-]`, strip leading `_`/`-`.
pub fn normalize_project_name(s: &str) -> String {
    let lower = s.to_lowercase();
    let kept: String = lower
        .chars()
        .filter(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
        .collect();
    kept.trim_start_matches(['_', '-']).to_string()
}

/// The project name: `-p` / `COMPOSE_PROJECT_NAME` (`explicit`, must already be normal), else
/// the top-level `name:` (`from_yaml`, normalised), else the project directory's basename
/// (normalised).
pub fn project_name(
    explicit: Option<&str>,
    from_yaml: Option<&str>,
    project_dir: &Path,
) -> Result<String, DiscoveryError> {
    if let Some(n) = explicit.filter(|n| !n.is_empty()) {
        if normalize_project_name(n) != n {
            return Err(DiscoveryError::InvalidProjectName(n.to_string()));
        }
        return Ok(n.to_string());
    }
    if let Some(n) = from_yaml
        .map(normalize_project_name)
        .filter(|n| !n.is_empty())
    {
        return Ok(n);
    }
    let base = project_dir
        .file_name()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let n = normalize_project_name(&base);
    if n.is_empty() {
        return Err(DiscoveryError::EmptyProjectName);
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn default_names_walk_up_and_override() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let sub = root.join("a/b");
        fs::create_dir_all(&sub).unwrap();
        assert_eq!(
            find_files(&sub, &[], None, None),
            Err(DiscoveryError::NotFound)
        );
        fs::write(root.join("docker-compose.yml"), "services: {}\n").unwrap();
        let f = find_files(&sub, &[], None, None).unwrap();
        assert_eq!(f.files, [root.join("docker-compose.yml")]);
        assert!(f.warnings.is_empty());
        fs::write(root.join("compose.yaml"), "services: {}\n").unwrap();
        fs::write(root.join("docker-compose.override.yml"), "services: {}\n").unwrap();
        let f = find_files(&sub, &[], None, None).unwrap();
        assert_eq!(
            f.files,
            [
                root.join("compose.yaml"),
                root.join("docker-compose.override.yml")
            ]
        );
        assert_eq!(
            f.warnings,
            [
                format!(
                    "Found multiple config files with supported names: {}, {}",
                    root.join("compose.yaml").display(),
                    root.join("docker-compose.yml").display()
                ),
                format!("Using {}", root.join("compose.yaml").display()),
            ]
        );
    }

    #[test]
    fn explicit_and_compose_file() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        fs::write(root.join("a.yml"), "").unwrap();
        fs::write(root.join("b.yml"), "").unwrap();
        let f = find_files(
            root,
            &["a.yml".into(), "./b.yml".into()],
            Some("ignored.yml"),
            None,
        )
        .unwrap();
        assert_eq!(f.files, [root.join("a.yml"), root.join("b.yml")]);
        let f = find_files(root, &[], Some("a.yml;b.yml"), Some(";")).unwrap();
        assert_eq!(f.files, [root.join("a.yml"), root.join("b.yml")]);
        let f = find_files(root, &[], Some("b.yml:a.yml"), None).unwrap();
        assert_eq!(f.files, [root.join("b.yml"), root.join("a.yml")]);
        let e = find_files(root, &["nope.yml".into()], None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "open {}: no such file or directory",
                root.join("nope.yml").display()
            )
        );
    }

    #[test]
    fn names() {
        assert_eq!(normalize_project_name("My App.v2"), "myappv2");
        assert_eq!(normalize_project_name("__-x_y"), "x_y");
        let d = Path::new("/srv/My_Project");
        assert_eq!(project_name(None, None, d).unwrap(), "my_project");
        assert_eq!(project_name(None, Some("fromyaml"), d).unwrap(), "fromyaml");
        assert_eq!(
            project_name(None, Some("From YAML"), d).unwrap(),
            "fromyaml"
        );
        assert_eq!(
            project_name(Some("cli"), Some("fromyaml"), d).unwrap(),
            "cli"
        );
        assert_eq!(
            project_name(Some("Bad"), None, d).unwrap_err().to_string(),
            "invalid project name \"Bad\": must consist only of lowercase alphanumeric characters, hyphens, and underscores as well as start with a letter or number"
        );
        assert_eq!(
            project_name(None, None, Path::new("/srv/__")),
            Err(DiscoveryError::EmptyProjectName)
        );
    }
}
