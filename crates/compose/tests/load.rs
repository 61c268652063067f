//! The loader end to end on the fixtures in tests/fixtures (no engine, no root).

use barge_compose::model::*;
use barge_compose::render::{render, Format};
use barge_compose::{load, LoadError, Loaded, Options};
use std::collections::BTreeMap;
use std::path::PathBuf;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn opts(dir: &str, files: &[&str]) -> Options {
    Options {
        cwd: fixtures().join(dir),
        files: files.iter().map(|s| s.to_string()).collect(),
        env: BTreeMap::from([("HOME".to_string(), "/home/u".to_string())]),
        ..Default::default()
    }
}

fn err(o: &Options) -> String {
    match load(o) {
        Ok(_) => panic!("loaded"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn basic_project() {
    let dir = fixtures().join("basic");
    let d = dir.display().to_string();
    let mut o = opts("basic", &[]);
    o.env.insert("FROM_HOST".into(), "from-os".into());
    let Loaded {
        project: p,
        warnings,
    } = load(&o).unwrap();
    assert_eq!(p.name, "basic");
    assert_eq!(
        p.config_files,
        [
            format!("{d}/compose.yaml"),
            format!("{d}/compose.override.yaml")
        ]
    );
    assert_eq!(
        warnings,
        [format!(
            "{d}/compose.yaml: the attribute `version` is obsolete, it will be ignored, please remove it to avoid potential confusion"
        )]
    );
    let api = &p.services["api"];
    assert_eq!(api.image, "api:1.2");
    assert_eq!(api.restart, "unless-stopped");
    assert_eq!(
        api.labels,
        BTreeMap::from([("tier".to_string(), "backend".to_string())])
    );
    assert_eq!(
        api.command.as_deref(),
        Some(&["sh".to_string(), "-c".into(), "echo hi".into()][..])
    );
    assert_eq!(api.build.as_ref().unwrap().context, format!("{d}/api"));
    assert_eq!(api.build.as_ref().unwrap().dockerfile, "Dockerfile");
    let env: BTreeMap<&str, Option<&str>> = api
        .environment
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_deref()))
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("APP_MODE", Some("prod")),
            ("DB_URL", Some("postgres://db/main")),
            ("EXTRA", Some("1")),
            ("FROM_HOST", Some("from-os")),
        ])
    );
    assert_eq!(
        api.env_file,
        [
            EnvFile {
                path: format!("{d}/app.env"),
                required: true
            },
            EnvFile {
                path: format!("{d}/optional.env"),
                required: false
            }
        ]
    );
    // the override's identical port is de-duplicated; the udp range is expanded
    let ports: Vec<(String, u32, String, String)> = api
        .ports
        .iter()
        .map(|p| {
            (
                p.host_ip.clone(),
                p.target,
                p.published.clone(),
                p.protocol.clone(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        [
            ("".into(), 8080, "8080".into(), "tcp".into()),
            ("127.0.0.1".into(), 9000, "9000".into(), "udp".into()),
            ("127.0.0.1".into(), 9001, "9001".into(), "udp".into()),
        ]
    );
    let vols: Vec<(&str, &str, &str, bool)> = api
        .volumes
        .iter()
        .map(|v| {
            (
                v.kind.as_str(),
                v.source.as_str(),
                v.target.as_str(),
                v.read_only,
            )
        })
        .collect();
    assert_eq!(
        vols,
        [
            ("bind", &*format!("{d}/data"), "/data", true),
            ("volume", "cache", "/cache", false),
            ("bind", "/home/u/conf", "/conf", false)
        ]
    );
    assert_eq!(
        api.depends_on["db"],
        Dependency {
            condition: "service_started".into(),
            restart: false,
            required: true
        }
    );
    let hc = api.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "curl -f http://localhost:8080/"]);
    assert_eq!(
        (hc.interval.as_deref(), hc.timeout.as_deref(), hc.retries),
        (Some("1m30s"), Some("500ms"), Some(3))
    );
    assert_eq!(
        api.networks,
        BTreeMap::from([("default".to_string(), None)])
    );
    assert_eq!(p.networks["default"].name, "basic_default");
    assert_eq!(p.volumes["dbdata"].name, "basic_dbdata");
}

#[test]
fn project_name_sources_and_env_file_switches() {
    let mut o = opts("basic", &[]);
    o.env.insert("PROJECT".into(), "fromenv".into());
    assert_eq!(load(&o).unwrap().project.name, "fromenv");
    o.env
        .insert("COMPOSE_PROJECT_NAME".into(), "fromvar".into());
    assert_eq!(load(&o).unwrap().project.name, "fromvar");
    o.project_name = Some("flag".into());
    assert_eq!(load(&o).unwrap().project.name, "flag");
    // a name in the file is normalised, and the result is available to interpolation
    let p = load(&opts("basic", &["named.yaml"])).unwrap().project;
    assert_eq!(
        (p.name.as_str(), p.services["web"].container_name.as_str()),
        ("myapp", "myapp-main")
    );
    o.project_name = Some("Bad Name".into());
    assert!(err(&o).starts_with("invalid project name \"Bad Name\""));
    // without .env, TAG is unset: a warning and a blank
    let mut o = opts("basic", &[]);
    o.env.insert("COMPOSE_DISABLE_ENV_FILE".into(), "1".into());
    o.env.insert("API_PORT".into(), "81".into());
    let l = load(&o).unwrap();
    assert_eq!(l.project.services["api"].image, "api:");
    assert!(l
        .warnings
        .contains(&"The \"TAG\" variable is not set. Defaulting to a blank string.".to_string()));
    // --project-directory: default files searched there; .env read from there
    let mut o = opts("merge", &[]);
    o.project_directory = Some("../basic".into());
    let p = load(&o).unwrap().project;
    assert_eq!(
        (p.name.as_str(), p.services["api"].image.as_str()),
        ("basic", "api:1.2")
    );
    let mut o = opts("basic", &[]);
    o.env_files = vec!["missing.env".into()];
    assert_eq!(
        err(&o),
        format!(
            "couldn't find env file: {}/basic/missing.env",
            fixtures().display()
        )
    );
}

#[test]
fn secrets_and_configs() {
    let p = load(&opts("basic", &["secrets.yaml"])).unwrap().project;
    let d = fixtures().join("basic").display().to_string();
    let web = &p.services["web"];
    assert_eq!(
        serde_json::to_value(&web.secrets).unwrap(),
        serde_json::json!([{"source": "token"}, {"source": "cert", "target": "/etc/cert.pem"}])
    );
    assert_eq!(
        serde_json::to_value(&web.configs).unwrap(),
        serde_json::json!([{"source": "conf"}])
    );
    assert_eq!(
        p.secrets["token"],
        FileObject {
            name: "basic_token".into(),
            file: format!("{d}/token.txt"),
            ..Default::default()
        }
    );
    assert_eq!(p.secrets["cert"].environment, "CERT");
    assert_eq!(p.configs["conf"].content, "hello");
}

#[test]
fn merge_files_with_tags() {
    let p = load(&opts("merge", &["a.yml", "b.yml"])).unwrap().project;
    let web = &p.services["web"];
    assert_eq!(web.image, "web:2");
    assert_eq!(
        web.command.as_deref(),
        Some(&["run".to_string(), "--b".into()][..])
    );
    assert_eq!(web.entrypoint.as_deref(), Some(&["/bin/a".to_string()][..]));
    assert_eq!(web.environment.len(), 3);
    assert_eq!(web.environment["B"].as_deref(), Some("3"));
    assert!(web.ports.is_empty());
    assert_eq!(web.dns, ["9.9.9.9"]);
    assert_eq!(web.networks.keys().collect::<Vec<_>>(), ["back", "front"]);
    assert_eq!(web.networks["back"].as_ref().unwrap().aliases, ["w"]);
    // COMPOSE_FILE from the working directory's .env gives the same project
    assert_eq!(
        load(&opts("merge", &[])).unwrap().project.services,
        p.services
    );
    // COMPOSE_FILE with a custom separator gives the same project
    let mut o = opts("merge", &[]);
    o.env.insert("COMPOSE_FILE".into(), "a.yml,b.yml".into());
    o.env.insert("COMPOSE_PATH_SEPARATOR".into(), ",".into());
    let mut got = load(&o).unwrap().project;
    // the environment it was loaded with differs by those variables, nothing else
    assert_eq!(got.environment["COMPOSE_FILE"], "a.yml,b.yml");
    got.environment = p.environment.clone();
    assert_eq!(got, p);
}

#[test]
fn extends_and_cycles() {
    let p = load(&opts("extends", &[])).unwrap().project;
    let d = fixtures().join("extends").display().to_string();
    assert_eq!(p.services["web"].image, "base:1");
    assert_eq!(p.services["web"].environment.len(), 2);
    let r = &p.services["remote"];
    assert_eq!(r.image, "remote:1");
    assert_eq!(r.build.as_ref().unwrap().context, format!("{d}/common/src"));
    assert_eq!(r.volumes[0].source, format!("{d}/common/data"));
    assert_eq!(r.command.as_deref(), Some(&["serve".to_string()][..]));
    let f = format!("{d}/cycle.yml");
    assert_eq!(
        err(&opts("extends", &["cycle.yml"])),
        format!("Circular reference:\n  a in {f}\n  extends b in {f}\n  extends a in {f}")
    );
}

#[test]
fn include_and_conflict() {
    let p = load(&opts("include", &[])).unwrap().project;
    assert_eq!(p.services.keys().collect::<Vec<_>>(), ["db", "web"]);
    let d = fixtures().join("include/sub").display().to_string();
    assert_eq!(p.services["db"].volumes[0].source, format!("{d}/dbinit"));
    assert_eq!(p.services["db"].volumes[1].source, format!("{d}/conf"));
    assert_eq!(p.secrets["pw"].file, format!("{d}/pw.txt"));
    assert_eq!(
        err(&opts("include", &["conflict.yaml"])),
        "services.db conflicts with imported resource"
    );
}

#[test]
fn profiles() {
    let names = |o: &Options| {
        load(o)
            .unwrap()
            .project
            .services
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut o = opts("profiles", &[]);
    assert_eq!(names(&o), ["web"]);
    o.profiles = vec!["debug".into()];
    assert_eq!(names(&o), ["debug", "web"]);
    o.profiles.clear();
    o.env
        .insert("COMPOSE_PROFILES".into(), "debug,tools".into());
    assert_eq!(names(&o), ["debug", "tools", "web"]);
    let mut o = opts("profiles", &[]);
    o.services = vec!["tools".into()];
    assert_eq!(names(&o), ["tools", "web"]);
    // a required dependency left out by profiles is an error; an optional one is dropped
    let mut o = opts("profiles", &["deps.yaml"]);
    assert_eq!(
        err(&o),
        "service \"db\" is required by \"web\" but is disabled. Can be enabled by profiles [data debug]"
    );
    o.profiles = vec!["data".into()];
    let p = load(&o).unwrap().project;
    assert_eq!(
        p.services["web"].depends_on.keys().collect::<Vec<_>>(),
        ["db"]
    );
}

#[test]
fn errors() {
    let e = |f: &str| err(&opts("errors", &[f]));
    let d = fixtures().join("errors").display().to_string();
    assert_eq!(
        e("undefined-network.yaml"),
        "service \"web\" refers to undefined network front: invalid compose project"
    );
    assert_eq!(
        e("unknown-key.yaml"),
        format!("validating {d}/unknown-key.yaml: services.web additional properties 'imagee' not allowed")
    );
    assert_eq!(
        e("required-var.yaml"),
        "error while interpolating services.web.image: required variable IMAGE is missing a value: set IMAGE to the image to run"
    );
    assert_eq!(
        e("missing-envfile.yaml"),
        format!("env file {d}/nope.env not found: stat {d}/nope.env: no such file or directory")
    );
    let y = e("bad-yaml.yaml");
    assert!(
        y.starts_with(&format!("failed to parse {d}/bad-yaml.yaml: ")) && y.contains("line 4"),
        "{y}"
    );
    assert_eq!(
        e("depends-undefined.yaml"),
        "service \"web\" depends on undefined service \"db\": invalid compose project"
    );
    assert!(
        e("bad-interp.yaml").starts_with("invalid interpolation format for services.web.command.")
    );
    assert!(matches!(
        load(&opts("errors", &["nope.yaml"])),
        Err(LoadError::Discovery(_))
    ));
}

#[test]
fn render_yaml_and_json() {
    let p = load(&opts("merge", &["a.yml", "b.yml"])).unwrap().project;
    let yaml = render(&p, Format::Yaml).unwrap();
    assert_eq!(
        yaml,
        "name: merge
services:
  web:
    command:
      - run
      - --b
    dns:
      - 9.9.9.9
    entrypoint:
      - /bin/a
    environment:
      A: \"1\"
      B: \"3\"
      C: \"4\"
    image: web:2
    networks:
      back:
        aliases:
          - w
      front: null
networks:
  back:
    name: merge_back
  front:
    name: merge_front
"
    );
    let json: serde_json::Value = serde_json::from_str(&render(&p, Format::Json).unwrap()).unwrap();
    assert_eq!(
        json["services"]["web"]["networks"]["front"],
        serde_json::Value::Null
    );
    let p = load(&opts("profiles", &[])).unwrap().project;
    let json = render(&p, Format::Json).unwrap();
    assert!(
        json.contains("\"command\": null") && json.contains("\"environment\": null"),
        "{json}"
    );
    let yaml = render(&p, Format::Yaml).unwrap();
    assert!(
        !yaml.contains("command")
            && !yaml.contains("environment")
            && yaml.contains("      default: null\n"),
        "{yaml}"
    );
}
