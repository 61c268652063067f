//! Resource metrics and the HorizontalPodAutoscaler on a one-node `barge server`, driven with
//! kubectl 1.32 as on Kubernetes: `kubectl top pod|node` over `metrics.k8s.io` (the agent's
//! cgroup samples), `kubectl autoscale` and `kubectl get hpa`, a CPU-burning Deployment scaled
//! up then down, a `behavior` policy that limits the step, and kube's conditions for bad
//! input (a target that does not exist, pods without CPU requests). The loop is shortened
//! with kube-controller-manager's flags so the test takes well under two minutes.

mod common;

use std::time::{Duration, Instant};

use common::server::*;
use common::*;

const NODE: &str = "node1";

/// The shortened settings: the agent samples every second, the autoscaler syncs every 2 s.
const SHORTENED: [&str; 6] = [
    "--node-name",
    NODE,
    "--metrics-resolution",
    "1s",
    "--horizontal-pod-autoscaler-sync-period",
    "2s",
];

/// A server with the [`SHORTENED`] settings and a 5 s downscale window; the shared images
/// loaded, the node Ready.
fn cluster() -> Server {
    let window = ["--horizontal-pod-autoscaler-downscale-stabilization", "5s"];
    loaded_cluster(&[&SHORTENED[..], &window[..]].concat())
}

/// A server with its agent and `flags`, the shared images loaded, its node Ready.
fn loaded_cluster(flags: &[&str]) -> Server {
    let s = Server::start(true, flags);
    let layout = images_dir().join("oci-layout");
    let out = s.barge(&["load", "-i", layout.to_str().unwrap()]);
    assert!(out.status.success(), "load: {}", stderr(&out));
    s.k(&[
        "wait",
        "--for=condition=Ready",
        &format!("node/{NODE}"),
        "--timeout=60s",
    ]);
    s
}

/// The CPU burner: a Deployment `burn` spinning a shell loop (requests 100m), autoscaled
/// between 1 and 2 replicas at 50 % CPU as `kubectl autoscale` does it.
fn burn_autoscaled(s: &Server) {
    s.apply(&deployment(
        "burn",
        "while :; do :; done",
        "{requests: {cpu: 100m}}",
    ));
    s.k(&[
        "autoscale",
        "deployment",
        "burn",
        "--cpu-percent=50",
        "--min=1",
        "--max=2",
    ]);
}

/// A Deployment of busybox running `script` with `resources`.
fn deployment(name: &str, script: &str, resources: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: main
        image: busybox:1.35
        imagePullPolicy: Never
        command: ["sh", "-c", "{script}"]
        resources: {resources}
"#
    )
}

/// Polls `kubectl ARGS` until its output satisfies `want`, for `secs`; the last output.
fn wait_for(s: &Server, args: &[&str], secs: u64, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    while Instant::now() < deadline {
        let out = s.kubectl_with(&s.kubeconfig(), args);
        last = format!("{}{}", stdout(&out), stderr(&out));
        if out.status.success() && want(&last) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let hpa = s.kubectl_with(&s.kubeconfig(), &["get", "hpa", "-o", "yaml"]);
    panic!(
        "kubectl {args:?}: not as wanted after {secs}s: {last}\n{}\n{}",
        stdout(&hpa),
        s.log()
            .lines()
            .filter(|l| l.contains("hpa") || l.contains("metrics") || l.contains("WARN"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The condition `type` of HPA `name` as `STATUS|REASON|MESSAGE`.
fn condition(s: &Server, name: &str, type_: &str) -> String {
    s.k(&[
        "get",
        "hpa",
        name,
        "-o",
        &format!(
            "jsonpath={{range .status.conditions[?(@.type==\"{type_}\")]}}{{.status}}|{{.reason}}|{{.message}}{{end}}"
        ),
    ])
}

/// Waits until condition `type` of HPA `name` starts with `want`.
fn wait_condition(s: &Server, name: &str, type_: &str, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let c = condition(s, name, type_);
        if c.starts_with(want) {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "hpa {name}: {type_} is {c:?}, not {want:?}\n{}",
            s.k(&["get", "hpa", name, "-o", "yaml"])
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The events of object `name` as `REASON|TYPE|MESSAGE` lines.
fn events(s: &Server, name: &str) -> String {
    s.k(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
        "-o",
        r#"jsonpath={range .items[*]}{.reason}|{.type}|{.message}{"\n"}{end}"#,
    ])
}

/// A CPU quantity of `kubectl top` (`123m`) in millicores.
fn millicores(s: &str) -> u64 {
    s.trim_end_matches('m').parse().unwrap_or(0)
}

#[test]
fn kubectl_top_and_the_autoscaler_follow_cpu_load() {
    let mut s = cluster();
    // Discovery announces the resource metrics API (what `kubectl top` checks).
    let apis = s.k(&[
        "api-resources",
        "--api-group=metrics.k8s.io",
        "--no-headers",
    ]);
    assert!(
        apis.contains("pods") && apis.contains("PodMetrics"),
        "{apis}"
    );
    assert!(
        apis.contains("nodes") && apis.contains("NodeMetrics"),
        "{apis}"
    );

    // A target that does not exist: AbleToScale=False, FailedGetScale, TARGETS unknown.
    s.apply(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: ghost}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: ghost}
  minReplicas: 1
  maxReplicas: 3
  metrics:
  - type: Resource
    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}
"#,
    );
    let c = wait_condition(&s, "ghost", "AbleToScale", "False", 30);
    assert_eq!(
        c,
        "False|FailedGetScale|the HPA controller was unable to get the target's current scale: deployments.apps \"ghost\" not found"
    );
    let row = s.k(&["get", "hpa", "ghost", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cols[..6],
        &[
            "ghost",
            "Deployment/ghost",
            "cpu:",
            "<unknown>/50%",
            "1",
            "3"
        ],
        "{row}"
    );
    let ev = events(&s, "ghost");
    assert!(
        ev.contains("FailedGetScale|Warning|deployments.apps \"ghost\" not found"),
        "{ev}"
    );

    // Pods without CPU requests: ScalingActive=False, FailedGetResourceMetric.
    s.apply(&deployment("noreq", "sleep 3600", "{}"));
    s.k(&[
        "autoscale",
        "deployment",
        "noreq",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    // A behavior policy limits the step: memory per pod far above a 1Ki average, but one
    // pod per minute.
    s.apply(&deployment(
        "mem",
        "sleep 3600",
        "{requests: {memory: 16Mi}}",
    ));
    s.apply(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: mem}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: mem}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 1Ki}}
  behavior:
    scaleUp:
      stabilizationWindowSeconds: 0
      policies: [{type: Pods, value: 1, periodSeconds: 60}]
"#,
    );
    // ContainerResource metrics: one container's memory against its own request; a container
    // the pods do not have fails the metric with kube's reason.
    for (name, container) in [("cres", "main"), ("cmiss", "nosuch")] {
        s.apply(&deployment(
            name,
            "sleep 3600",
            "{requests: {memory: 16Mi}}",
        ));
        s.apply(&format!(
            r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {{name: {name}}}
spec:
  scaleTargetRef: {{apiVersion: apps/v1, kind: Deployment, name: {name}}}
  minReplicas: 1
  maxReplicas: 2
  metrics:
  - type: ContainerResource
    containerResource: {{name: memory, container: {container}, target: {{type: Utilization, averageUtilization: 1000}}}}
"#
        ));
    }
    // Pods, Object and External metrics: barge serves no custom or external metrics API, so
    // they fail as on a Kubernetes cluster without a metrics adapter, with kube's reasons.
    s.apply(&deployment(
        "custom",
        "sleep 3600",
        "{requests: {memory: 16Mi}}",
    ));
    s.apply(
        r#"apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: custom}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: custom}
  maxReplicas: 2
  metrics:
  - type: Pods
    pods: {metric: {name: qps}, target: {type: AverageValue, averageValue: "10"}}
  - type: Object
    object:
      metric: {name: requests}
      describedObject: {apiVersion: v1, kind: Service, name: web}
      target: {type: Value, value: "100"}
  - type: External
    external:
      metric: {name: queue_depth, selector: {matchLabels: {queue: jobs}}}
      target: {type: AverageValue, averageValue: "30"}
"#,
    );
    // Two autoscalers of one Deployment: both refused as ambiguous (kube's AmbiguousSelector).
    s.apply(&deployment(
        "amb",
        "sleep 3600",
        "{requests: {memory: 16Mi}}",
    ));
    for hpa in ["amb-a", "amb-b"] {
        s.k(&[
            "autoscale",
            "deployment",
            "amb",
            "--name",
            hpa,
            "--cpu-percent=50",
            "--max=2",
        ]);
    }
    // Any kind with a scale subresource: a StatefulSet, by memory (legacy normalization:
    // straight to the max).
    s.apply(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {name: sts}
spec:
  serviceName: sts
  replicas: 1
  selector: {matchLabels: {app: sts}}
  template:
    metadata: {labels: {app: sts}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: main
        image: busybox:1.35
        imagePullPolicy: Never
        command: ["sh", "-c", "sleep 3600"]
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: sts}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: StatefulSet, name: sts}
  maxReplicas: 2
  metrics:
  - type: Resource
    resource: {name: memory, target: {type: AverageValue, averageValue: 1Ki}}
"#,
    );
    // The CPU burner, autoscaled as `kubectl autoscale` does it.
    burn_autoscaled(&s);

    // kubectl top: the burner's pod uses CPU; its container; the node.
    let top = wait_for(
        &s,
        &["top", "pod", "-l", "app=burn", "--no-headers"],
        60,
        |o| {
            o.split_whitespace()
                .nth(1)
                .is_some_and(|c| millicores(c) >= 100)
        },
    );
    assert!(top.starts_with("burn-"), "{top}");
    let mem = top.split_whitespace().nth(2).unwrap_or_default();
    assert!(mem.ends_with("Mi"), "{top}");
    let containers = s.k(&[
        "top",
        "pod",
        "-l",
        "app=burn",
        "--containers",
        "--no-headers",
    ]);
    let cols: Vec<&str> = containers.split_whitespace().collect();
    assert!(
        cols[0].starts_with("burn-") && cols[1] == "main",
        "{containers}"
    );
    assert!(millicores(cols[2]) > 0, "{containers}");
    let node = s.k(&["top", "node", "--no-headers"]);
    let cols: Vec<&str> = node.split_whitespace().collect();
    assert_eq!(cols[0], NODE, "{node}");
    assert!(millicores(cols[1]) >= 100, "{node}");
    assert!(cols[2].ends_with('%') && cols[4].ends_with('%'), "{node}");
    // The ContainerResource autoscalers, metrics in hand.
    let c = wait_condition(&s, "cres", "ScalingActive", "True", 60);
    assert_eq!(
        c,
        "True|ValidMetricFound|the HPA was able to successfully calculate a replica count from memory container resource utilization (percentage of request)"
    );
    let current = s.k(&[
        "get",
        "hpa",
        "cres",
        "-o",
        "jsonpath={.status.currentMetrics[0].type} {.status.currentMetrics[0].containerResource.container}",
    ]);
    assert_eq!(current, "ContainerResource main");
    let row = s.k(&["get", "hpa", "cres", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert!(
        cols[2] == "memory:" && cols[3].ends_with("%/1000%") && !cols[3].contains("unknown"),
        "{row}"
    );
    let c = wait_condition(&s, "cmiss", "ScalingActive", "False", 60);
    assert!(
        c.starts_with(
            "False|FailedGetContainerResourceMetric|the HPA was unable to compute the replica count: \
             failed to get nosuch container metric value: failed to get memory utilization: unable to get \
             metrics for resource memory: failed to get container metrics: container nosuch not present \
             in metrics for pod default/cmiss-"
        ),
        "{c}"
    );
    for hpa in ["amb-a", "amb-b"] {
        let c = wait_condition(&s, hpa, "ScalingActive", "False|AmbiguousSelector", 60);
        assert_eq!(
            c,
            "False|AmbiguousSelector|pods by selector app=amb are controlled by multiple HPAs: \
             [default/amb-a default/amb-b]"
        );
    }
    let c = wait_condition(&s, "custom", "ScalingActive", "False", 60);
    assert_eq!(
        c,
        "False|FailedGetPodsMetric|the HPA was unable to compute the replica count: unable to get \
         metric qps: unable to fetch metrics from custom metrics API: no custom metrics API \
         (custom.metrics.k8s.io) registered"
    );
    let ev = events(&s, "custom");
    for want in [
        "FailedGetObjectMetric|Warning|unable to get metric requests: Service on default web/unable to fetch metrics from custom metrics API: no custom metrics API (custom.metrics.k8s.io) registered",
        "FailedGetExternalMetric|Warning|unable to get external metric default/queue_depth/&LabelSelector{MatchLabels:map[string]string{queue: jobs,},MatchExpressions:[]LabelSelectorRequirement{},}: unable to fetch metrics from external metrics API: the server could not find the requested resource (get queue_depth.external.metrics.k8s.io)",
    ] {
        assert!(ev.lines().any(|l| l == want), "{want}\n{ev}");
    }
    // One pod's metrics by name, and kube's 404 for a pod without any.
    let pod = top.split_whitespace().next().unwrap().to_string();
    s.k(&["top", "pod", &pod]);
    let out = s.kubectl_with(&s.kubeconfig(), &["top", "pod", "nosuchpod"]);
    assert!(!out.status.success());

    // Scale-up: 1 → 2 (the max), with kube's event and status.
    let started = Instant::now();
    wait_for(
        &s,
        &[
            "get",
            "deployment",
            "burn",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        60,
        |o| o.trim() == "2",
    );
    eprintln!(
        "hpa: first scale-up {:?} after the autoscaler was created",
        started.elapsed()
    );
    let ev = events(&s, "burn");
    assert!(
        ev.contains("SuccessfulRescale|Normal|New size: 2; reason: cpu resource utilization (percentage of request) above target"),
        "{ev}"
    );
    let c = wait_condition(&s, "burn", "ScalingActive", "True", 30);
    assert_eq!(
        c,
        "True|ValidMetricFound|the HPA was able to successfully calculate a replica count from cpu resource utilization (percentage of request)"
    );
    let st = s.k(&[
        "get",
        "hpa",
        "burn",
        "-o",
        "jsonpath={.status.desiredReplicas}|{.status.observedGeneration}|{.status.lastScaleTime}|{.status.currentMetrics[0].resource.current.averageUtilization}",
    ]);
    let f: Vec<&str> = st.split('|').collect();
    assert_eq!(f[0], "2", "{st}");
    assert_eq!(f[1], "1", "{st}");
    assert!(!f[2].is_empty(), "{st}");
    assert!(f[3].parse::<u32>().unwrap_or(0) > 50, "{st}");
    // TARGETS as kubectl shows them: `cpu: N%/50%`.
    let row = s.k(&["get", "hpa", "burn", "--no-headers"]);
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], "Deployment/burn", "{row}");
    assert_eq!(cols[2], "cpu:", "{row}");
    assert!(
        cols[3].ends_with("%/50%") && !cols[3].starts_with('<'),
        "{row}"
    );
    // The replicas are capped at the max: ScalingLimited=True TooManyReplicas.
    let c = wait_condition(&s, "burn", "ScalingLimited", "True", 30);
    assert!(c.starts_with("True|TooManyReplicas|"), "{c}");

    // Missing requests.
    // (Before the pod has metrics the reason is the same with another message.)
    wait_condition(
        &s,
        "noreq",
        "ScalingActive",
        "False|FailedGetResourceMetric|the HPA was unable to compute the replica count: failed to get cpu utilization: missing request for cpu in container main of Pod noreq-",
        60,
    );
    let ev = events(&s, "noreq");
    assert!(
        ev.contains("FailedGetResourceMetric|Warning|failed to get cpu utilization: missing request for cpu in container main of Pod noreq-"),
        "{ev}"
    );
    assert!(
        ev.contains("FailedComputeMetricsReplicas|Warning|invalid metrics (1 invalid out of 1), first error is: failed to get cpu utilization: missing request for cpu"),
        "{ev}"
    );
    assert_eq!(
        s.k(&[
            "get",
            "deployment",
            "noreq",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "1"
    );

    // The behavior policy: one pod per minute, so 2 and limited there.
    wait_for(
        &s,
        &[
            "get",
            "deployment",
            "mem",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        60,
        |o| o.trim() == "2",
    );
    let c = wait_condition(&s, "mem", "ScalingLimited", "True", 30);
    assert_eq!(
        c,
        "True|ScaleUpLimit|the desired replica count is increasing faster than the maximum scale rate"
    );
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        s.k(&[
            "get",
            "deployment",
            "mem",
            "-o",
            "jsonpath={.spec.replicas}"
        ]),
        "2"
    );
    let row = s.k(&["get", "hpa", "mem", "--no-headers"]);
    assert!(row.contains("memory:") && row.contains("/1Ki"), "{row}");

    wait_for(
        &s,
        &[
            "get",
            "statefulset",
            "sts",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        60,
        |o| o.trim() == "2",
    );
    let ev = events(&s, "sts");
    assert!(
        ev.contains("SuccessfulRescale|Normal|New size: 2; reason: memory resource above target"),
        "{ev}"
    );

    // The load stops (the template now sleeps): back to 1 after the 5 s window.
    s.k(&[
        "patch",
        "deployment",
        "burn",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/command","value":["sh","-c","sleep 3600"]}]"#,
    ]);
    wait_for(
        &s,
        &[
            "get",
            "deployment",
            "burn",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
        90,
        |o| o.trim() == "1",
    );
    let ev = events(&s, "burn");
    assert!(
        ev.contains("SuccessfulRescale|Normal|New size: 1; reason: All metrics below target"),
        "{ev}"
    );
    for d in ["burn", "mem", "noreq"] {
        s.k(&["delete", "deployment", d, "--wait=false"]);
    }
    s.k(&["delete", "statefulset", "sts", "--wait=false"]);
    s.k(&["delete", "hpa", "--all"]);
    s.stop();
}

/// The figure of docs/benchmarks.md: from creating a CPU-burning Deployment and its
/// autoscaler to the first scale-up, with kube's defaults (sync 15 s, 10 s resolution) and
/// with the shortened settings. `cargo test --test e2e_autoscale -- --ignored --nocapture`.
#[test]
#[ignore]
fn figure_reaction_to_load() {
    for (label, flags) in [
        ("default", vec!["--node-name", NODE]),
        ("shortened", SHORTENED.to_vec()),
    ] {
        let mut s = loaded_cluster(&flags);
        let started = Instant::now();
        burn_autoscaled(&s);
        wait_for(
            &s,
            &[
                "get",
                "deployment",
                "burn",
                "-o",
                "jsonpath={.spec.replicas}",
            ],
            120,
            |o| o.trim() == "2",
        );
        eprintln!("hpa reaction ({label}): {:?}", started.elapsed());
        s.k(&["delete", "deployment", "burn", "--wait=false"]);
        s.stop();
    }
}
