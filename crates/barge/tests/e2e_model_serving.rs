//! The README's model-serving platform demo (`scripts/demo-cluster.sh`, which the README's first
//! command ends with) as a test, with a shorter load: `barge server`, `barge build` of model:1
//! and model:2, a Deployment + Service + Ingress + HorizontalPodAutoscaler, scale-up under load
//! through the Ingress and back down, then a rollout to model:2 and `kubectl rollout undo`, each
//! under load with zero failed requests (the script exits non-zero otherwise).

mod common;

use std::process::{Command, Stdio};

use common::*;

#[test]
fn model_serving_platform_demo() {
    require_root();
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new("bash")
        .arg("scripts/demo-cluster.sh")
        .current_dir(&repo)
        .env("BARGE", BARGE)
        .env("BARGE_IMAGES", images_dir())
        .env("BARGE_INIT_PATH", init_path())
        .env("LOAD_SECONDS", "25")
        .env("LOAD_WORKERS", "3")
        .env("STEADY_SECONDS", "4")
        .stdin(Stdio::null())
        .output()
        .expect("running scripts/demo-cluster.sh");
    let text = format!("{}\n{}", stdout(&out), stderr(&out));
    assert!(
        out.status.success(),
        "demo-cluster.sh failed ({}):\n{text}",
        out.status
    );
    assert!(text.contains("cluster demo OK"), "{text}");
    assert!(
        text.contains("load at steady state: {") && text.contains("p99 during the rollout"),
        "{text}"
    );
    // Both rollouts under load served requests and failed none, and both versions answered.
    let loads: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| l.split_once("load during the rollout: "))
        .map(|(_, j)| serde_json::from_str(j).unwrap())
        .collect();
    assert_eq!(loads.len(), 2, "{text}");
    for l in &loads {
        assert_eq!(l["failures"], 0, "{text}");
        assert!(l["requests"].as_u64().unwrap() > 0, "{text}");
    }
    assert!(loads[0]["models"].get("demo-linear-v2").is_some(), "{text}");
    assert!(loads[1]["models"].get("demo-linear-v1").is_some(), "{text}");
    // The Ingress named no class: DefaultIngressClass gave it the default one, `barge`.
    let ingress = text
        .lines()
        .rev()
        .find(|l| l.starts_with("ingress.networking.k8s.io/model "))
        .unwrap_or_else(|| panic!("no ingress row: {text}"));
    assert_eq!(
        ingress.split_whitespace().nth(1),
        Some("barge"),
        "{ingress}"
    );
    println!("{text}");
}
