//! End-to-end: the daemon's JSON bodies against the Docker Engine API's typed models.
//!
//! Every GET endpoint that answers JSON (and the JSON bodies of create, commit, prune, wait and
//! update) is called over the socket and its body deserialised into the matching
//! `bollard_stubs::models` type — the models of moby's `api/swagger.yaml` — so a field of the
//! wrong type fails here instead of in a client. The models are lenient about missing fields
//! (everything is an `Option`), so each body is also checked for the keys dockerd always sends
//! (swagger's `required` lists and dockerd's own output, which never omits them).

mod common;

use std::process::Command;

use bollard_stubs::models as m;
use common::*;
use serde::de::DeserializeOwned;
use serde_json::Value;

const BB: &str = "busybox:1.35";

/// `METHOD /v1.47PATH` over the daemon's socket with an optional JSON body: (status, body).
fn api(d: &Daemon, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-S",
        "--max-time",
        "30",
        "-X",
        method,
        "-w",
        "\n%{http_code}",
    ])
    .arg("--unix-socket")
    .arg(&d.sock);
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "--data-binary", b]);
    }
    cmd.arg(format!("http://localhost/v1.47{path}"));
    let out = cmd.output().expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').expect("curl status line");
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Collects mismatches so one run reports all of them.
#[derive(Default)]
struct Checker {
    failures: Vec<String>,
}

impl Checker {
    /// Calls the endpoint, expects `status`, deserialises the body as `T` and checks that every
    /// key path in `required` (`A.B` for nested objects) is present.
    fn check<T: DeserializeOwned>(
        &mut self,
        d: &Daemon,
        method: &str,
        path: &str,
        body: Option<&str>,
        status: u16,
        required: &[&str],
    ) -> Value {
        let (code, text) = api(d, method, path, body);
        if code != status {
            self.failures.push(format!(
                "{method} {path}: status {code}, want {status}: {text}"
            ));
            return Value::Null;
        }
        self.check_body::<T>(&format!("{method} {path}"), &text, required)
    }

    /// Deserialises `text` as `T` and checks `required` key paths; returns the body as JSON.
    fn check_body<T: DeserializeOwned>(
        &mut self,
        what: &str,
        text: &str,
        required: &[&str],
    ) -> Value {
        if let Err(e) = serde_json::from_str::<T>(text) {
            self.failures.push(format!(
                "{what}: does not deserialise into {}: {e}\n  body: {}",
                std::any::type_name::<T>(),
                &text[..text.len().min(600)]
            ));
        }
        let v: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.failures.push(format!("{what}: not JSON: {e}"));
                return Value::Null;
            }
        };
        self.keys(what, &v, required);
        v
    }

    /// Checks that `v` has every key path in `required`.
    fn keys(&mut self, what: &str, v: &Value, required: &[&str]) {
        for k in required {
            let mut cur = v;
            let mut ok = true;
            for part in k.split('.') {
                match cur.as_object().and_then(|o| o.get(part)) {
                    Some(x) => cur = x,
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok {
                self.failures.push(format!("{what}: missing key {k}"));
            }
        }
    }
}

// Key lists: swagger's `required` where it has one, else what dockerd 27 always sends (for
// `HostConfig`, every field of moby's `container.HostConfig` without `omitempty`).
const CONTAINER_SUMMARY: &[&str] = &[
    "Id",
    "Names",
    "Image",
    "ImageID",
    "Command",
    "Created",
    "Ports",
    "Labels",
    "State",
    "Status",
    "HostConfig",
    "HostConfig.NetworkMode",
    "NetworkSettings",
    "NetworkSettings.Networks",
    "Mounts",
];
const CONTAINER_INSPECT: &[&str] = &[
    "Id",
    "Created",
    "Path",
    "Args",
    "State",
    "State.Status",
    "State.Running",
    "State.Paused",
    "State.Restarting",
    "State.OOMKilled",
    "State.Dead",
    "State.Pid",
    "State.ExitCode",
    "State.Error",
    "State.StartedAt",
    "State.FinishedAt",
    "Image",
    "ResolvConfPath",
    "HostnamePath",
    "HostsPath",
    "LogPath",
    "Name",
    "RestartCount",
    "Driver",
    "Platform",
    "MountLabel",
    "ProcessLabel",
    "AppArmorProfile",
    "ExecIDs",
    "HostConfig",
    "HostConfig.NetworkMode",
    "HostConfig.RestartPolicy",
    "HostConfig.LogConfig",
    "HostConfig.PortBindings",
    "HostConfig.Binds",
    "HostConfig.ContainerIDFile",
    "HostConfig.AutoRemove",
    "HostConfig.VolumeDriver",
    "HostConfig.VolumesFrom",
    "HostConfig.ConsoleSize",
    "HostConfig.CapAdd",
    "HostConfig.CapDrop",
    "HostConfig.CgroupnsMode",
    "HostConfig.Dns",
    "HostConfig.DnsOptions",
    "HostConfig.DnsSearch",
    "HostConfig.ExtraHosts",
    "HostConfig.GroupAdd",
    "HostConfig.IpcMode",
    "HostConfig.Cgroup",
    "HostConfig.Links",
    "HostConfig.OomScoreAdj",
    "HostConfig.PidMode",
    "HostConfig.Privileged",
    "HostConfig.PublishAllPorts",
    "HostConfig.ReadonlyRootfs",
    "HostConfig.SecurityOpt",
    "HostConfig.UTSMode",
    "HostConfig.UsernsMode",
    "HostConfig.ShmSize",
    "HostConfig.Runtime",
    "HostConfig.Isolation",
    "HostConfig.CpuShares",
    "HostConfig.Memory",
    "HostConfig.NanoCpus",
    "HostConfig.CgroupParent",
    "HostConfig.BlkioWeight",
    "HostConfig.BlkioWeightDevice",
    "HostConfig.BlkioDeviceReadBps",
    "HostConfig.BlkioDeviceWriteBps",
    "HostConfig.BlkioDeviceReadIOps",
    "HostConfig.BlkioDeviceWriteIOps",
    "HostConfig.CpuPeriod",
    "HostConfig.CpuQuota",
    "HostConfig.CpuRealtimePeriod",
    "HostConfig.CpuRealtimeRuntime",
    "HostConfig.CpusetCpus",
    "HostConfig.CpusetMems",
    "HostConfig.Devices",
    "HostConfig.DeviceCgroupRules",
    "HostConfig.DeviceRequests",
    "HostConfig.MemoryReservation",
    "HostConfig.MemorySwap",
    "HostConfig.MemorySwappiness",
    "HostConfig.OomKillDisable",
    "HostConfig.PidsLimit",
    "HostConfig.Ulimits",
    "HostConfig.CpuCount",
    "HostConfig.CpuPercent",
    "HostConfig.IOMaximumIOps",
    "HostConfig.IOMaximumBandwidth",
    "GraphDriver",
    "GraphDriver.Name",
    "GraphDriver.Data",
    "Mounts",
    "Config",
    "Config.Hostname",
    "Config.Domainname",
    "Config.User",
    "Config.AttachStdin",
    "Config.AttachStdout",
    "Config.AttachStderr",
    "Config.Tty",
    "Config.OpenStdin",
    "Config.StdinOnce",
    "Config.Env",
    "Config.Cmd",
    "Config.Image",
    "Config.Volumes",
    "Config.WorkingDir",
    "Config.Entrypoint",
    "Config.OnBuild",
    "Config.Labels",
    "NetworkSettings",
    "NetworkSettings.Networks",
    "NetworkSettings.Ports",
    "NetworkSettings.SandboxKey",
];
const IMAGE_SUMMARY: &[&str] = &[
    "Id",
    "ParentId",
    "RepoTags",
    "RepoDigests",
    "Created",
    "Size",
    "SharedSize",
    "Labels",
    "Containers",
];
const IMAGE_INSPECT: &[&str] = &[
    "Id",
    "RepoTags",
    "RepoDigests",
    "Parent",
    "Comment",
    "Created",
    "DockerVersion",
    "Author",
    "Config",
    "Architecture",
    "Os",
    "Size",
    "GraphDriver",
    "GraphDriver.Name",
    "RootFS",
    "RootFS.Type",
    "RootFS.Layers",
    "Metadata",
    "Metadata.LastTagTime",
    "Config.Hostname",
    "Config.Domainname",
    "Config.User",
    "Config.AttachStdin",
    "Config.AttachStdout",
    "Config.AttachStderr",
    "Config.Tty",
    "Config.OpenStdin",
    "Config.StdinOnce",
    "Config.Env",
    "Config.Cmd",
    "Config.Image",
    "Config.Volumes",
    "Config.WorkingDir",
    "Config.Entrypoint",
    "Config.OnBuild",
    "Config.Labels",
];
const VOLUME: &[&str] = &[
    "Name",
    "Driver",
    "Mountpoint",
    "Labels",
    "Scope",
    "Options",
    "CreatedAt",
];
const NETWORK: &[&str] = &[
    "Name",
    "Id",
    "Created",
    "Scope",
    "Driver",
    "EnableIPv6",
    "IPAM",
    "IPAM.Driver",
    "IPAM.Config",
    "Internal",
    "Attachable",
    "Ingress",
    "ConfigFrom",
    "ConfigOnly",
    "Containers",
    "Options",
    "Labels",
];
const EXEC_INSPECT: &[&str] = &[
    "CanRemove",
    "ContainerID",
    "DetachKeys",
    "ExitCode",
    "ID",
    "OpenStderr",
    "OpenStdin",
    "OpenStdout",
    "ProcessConfig",
    "ProcessConfig.entrypoint",
    "ProcessConfig.arguments",
    "ProcessConfig.privileged",
    "ProcessConfig.tty",
    "ProcessConfig.user",
    "Running",
    "Pid",
];
const VERSION: &[&str] = &[
    "Platform",
    "Platform.Name",
    "Components",
    "Version",
    "ApiVersion",
    "MinAPIVersion",
    "GitCommit",
    "GoVersion",
    "Os",
    "Arch",
    "KernelVersion",
    "BuildTime",
];
const INFO: &[&str] = &[
    "ID",
    "Containers",
    "ContainersRunning",
    "ContainersPaused",
    "ContainersStopped",
    "Images",
    "Driver",
    "DriverStatus",
    "Plugins",
    "MemoryLimit",
    "SwapLimit",
    "CpuCfsPeriod",
    "CpuCfsQuota",
    "OomKillDisable",
    "IPv4Forwarding",
    "Debug",
    "NFd",
    "NGoroutines",
    "SystemTime",
    "LoggingDriver",
    "CgroupDriver",
    "CgroupVersion",
    "NEventsListener",
    "KernelVersion",
    "OperatingSystem",
    "OSType",
    "Architecture",
    "IndexServerAddress",
    "RegistryConfig",
    "NCPU",
    "MemTotal",
    "DockerRootDir",
    "HttpProxy",
    "HttpsProxy",
    "NoProxy",
    "Name",
    "Labels",
    "ExperimentalBuild",
    "ServerVersion",
    "Runtimes",
    "DefaultRuntime",
    "Swarm",
    "LiveRestoreEnabled",
    "Isolation",
    "InitBinary",
    "ContainerdCommit",
    "RuncCommit",
    "InitCommit",
    "SecurityOptions",
    "Warnings",
];
const STATS: &[&str] = &[
    "read",
    "preread",
    "pids_stats",
    "blkio_stats",
    "num_procs",
    "storage_stats",
    "cpu_stats",
    "precpu_stats",
    "memory_stats",
    "name",
    "id",
];
const EVENT: &[&str] = &[
    "Type",
    "Action",
    "Actor",
    "Actor.ID",
    "Actor.Attributes",
    "scope",
    "time",
    "timeNano",
];

#[test]
fn every_json_endpoint_deserialises_into_the_engine_api_models() {
    let d = Daemon::start();
    d.load_layout();
    let mut c = Checker::default();

    // A running container with a label, a named volume and a published loopback port; a
    // created (never started) one; an exec that was created but not started.
    let id = d
        .ok(&[
            "run",
            "-d",
            "--name",
            "wire1",
            "--label",
            "k=v",
            "-v",
            "wirevol:/data",
            "-p",
            "127.0.0.1:18391:80",
            // Typed fields of HostConfig/State: enums, mount options, a health check.
            "--restart",
            "unless-stopped",
            "--mount",
            "type=tmpfs,target=/scratch,tmpfs-size=1048576",
            "--mount",
            &format!("type=bind,source={},target=/host,readonly", d.dir.display()),
            "--health-cmd",
            "true",
            "--health-interval",
            "1s",
            BB,
            "sleep",
            "300",
        ])
        .trim()
        .to_string();
    d.wait_for("wire1 healthy", 30, || {
        d.inspect("wire1", "{{.State.Health.Status}}") == "healthy"
    });

    let (code, ping) = api(&d, "GET", "/_ping", None);
    assert_eq!((code, ping.as_str()), (200, "OK"));

    c.check::<m::SystemVersion>(&d, "GET", "/version", None, 200, VERSION);
    c.check::<m::SystemInfo>(&d, "GET", "/info", None, 200, INFO);

    // Containers.
    let created = c.check::<m::ContainerCreateResponse>(
        &d,
        "POST",
        "/containers/create?name=wire2",
        Some(r#"{"Image":"busybox:1.35","Cmd":["true"],"Labels":{"a":"b"}}"#),
        201,
        &["Id", "Warnings"],
    );
    assert!(created["Id"].is_string(), "create: {created}");
    let list =
        c.check::<Vec<m::ContainerSummary>>(&d, "GET", "/containers/json?all=1", None, 200, &[]);
    for (i, s) in list
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        c.keys(&format!("containers/json[{i}]"), s, CONTAINER_SUMMARY);
    }
    assert_eq!(list.as_array().map(Vec::len), Some(2), "list: {list}");
    for name in ["wire1", "wire2"] {
        c.check::<m::ContainerInspectResponse>(
            &d,
            "GET",
            &format!("/containers/{name}/json"),
            None,
            200,
            CONTAINER_INSPECT,
        );
    }
    c.check::<m::ContainerTopResponse>(
        &d,
        "GET",
        "/containers/wire1/top",
        None,
        200,
        &["Titles", "Processes"],
    );
    d.ok(&["exec", "wire1", "sh", "-c", "echo x > /wire-changed"]);
    let changes =
        c.check::<Vec<m::FilesystemChange>>(&d, "GET", "/containers/wire1/changes", None, 200, &[]);
    for (i, ch) in changes
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        c.keys(&format!("changes[{i}]"), ch, &["Path", "Kind"]);
    }
    c.check::<m::ContainerStatsResponse>(
        &d,
        "GET",
        "/containers/wire1/stats?stream=false",
        None,
        200,
        STATS,
    );
    c.check::<m::ContainerUpdateResponse>(
        &d,
        "POST",
        "/containers/wire1/update",
        Some(r#"{"CpuShares":512}"#),
        200,
        &["Warnings"],
    );

    // Exec.
    let exec = c.check::<m::IdResponse>(
        &d,
        "POST",
        "/containers/wire1/exec",
        Some(r#"{"Cmd":["true"],"AttachStdout":true}"#),
        201,
        &["Id"],
    );
    let exec_id = exec["Id"].as_str().unwrap_or("none").to_string();
    c.check::<m::ExecInspectResponse>(
        &d,
        "GET",
        &format!("/exec/{exec_id}/json"),
        None,
        200,
        EXEC_INSPECT,
    );
    // The container's inspect lists the exec: `ExecIDs` is an array then.
    c.check::<m::ContainerInspectResponse>(
        &d,
        "GET",
        "/containers/wire1/json",
        None,
        200,
        CONTAINER_INSPECT,
    );

    // Images.
    let imgs = c.check::<Vec<m::ImageSummary>>(&d, "GET", "/images/json", None, 200, &[]);
    for (i, s) in imgs
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        c.keys(&format!("images/json[{i}]"), s, IMAGE_SUMMARY);
    }
    c.check::<m::ImageInspect>(
        &d,
        "GET",
        &format!("/images/{BB}/json"),
        None,
        200,
        IMAGE_INSPECT,
    );
    c.check::<m::ImageInspect>(
        &d,
        "GET",
        "/images/multilayer:1/json",
        None,
        200,
        IMAGE_INSPECT,
    );
    let hist = c.check::<Vec<m::ImageHistoryResponseItem>>(
        &d,
        "GET",
        "/images/multilayer:1/history",
        None,
        200,
        &[],
    );
    for (i, h) in hist
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        c.keys(
            &format!("history[{i}]"),
            h,
            &["Id", "Created", "CreatedBy", "Tags", "Size", "Comment"],
        );
    }
    let commit = c.check::<m::IdResponse>(
        &d,
        "POST",
        "/commit?container=wire1&repo=wirecommit&tag=1",
        Some("{}"),
        201,
        &["Id"],
    );
    assert!(commit["Id"].is_string(), "commit: {commit}");

    let deleted = c.check::<Vec<m::ImageDeleteResponseItem>>(
        &d,
        "DELETE",
        "/images/wirecommit:1",
        None,
        200,
        &[],
    );
    assert!(
        deleted.as_array().is_some_and(|a| a
            .iter()
            .any(|i| i["Untagged"].is_string() || i["Deleted"].is_string())),
        "image delete: {deleted}"
    );

    // Volumes.
    c.check::<m::VolumeListResponse>(&d, "GET", "/volumes", None, 200, &["Volumes", "Warnings"]);
    c.check::<m::Volume>(&d, "GET", "/volumes/wirevol", None, 200, VOLUME);
    c.check::<m::Volume>(
        &d,
        "POST",
        "/volumes/create",
        Some(r#"{"Name":"wirevol2","Labels":{"x":"y"}}"#),
        201,
        VOLUME,
    );

    // Networks.
    let nets = c.check::<Vec<m::Network>>(&d, "GET", "/networks", None, 200, &[]);
    for (i, n) in nets
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        c.keys(&format!("networks[{i}]"), n, NETWORK);
    }
    c.check::<m::Network>(&d, "GET", "/networks/bridge", None, 200, NETWORK);
    c.check::<m::NetworkCreateResponse>(
        &d,
        "POST",
        "/networks/create",
        Some(r#"{"Name":"wirenet"}"#),
        201,
        &["Id", "Warning"],
    );
    c.check::<m::Network>(&d, "GET", "/networks/wirenet", None, 200, NETWORK);

    // System. bollard 1.53's `SystemDataUsageResponse` is API 1.52's reshaped body
    // (`ImageUsage`...), so the 1.47 body dockerd sends is checked part by part.
    let df = c.check::<serde_json::Map<String, Value>>(
        &d,
        "GET",
        "/system/df",
        None,
        200,
        &[
            "LayersSize",
            "Images",
            "Containers",
            "Volumes",
            "BuildCache",
        ],
    );
    let part = |k: &str| df[k].to_string();
    c.check_body::<i64>("system/df LayersSize", &part("LayersSize"), &[]);
    let df_images = c.check_body::<Vec<m::ImageSummary>>("system/df Images", &part("Images"), &[]);
    for (i, s) in df_images
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        c.keys(&format!("system/df Images[{i}]"), s, IMAGE_SUMMARY);
    }
    let df_ctrs =
        c.check_body::<Vec<m::ContainerSummary>>("system/df Containers", &part("Containers"), &[]);
    for (i, s) in df_ctrs
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        c.keys(&format!("system/df Containers[{i}]"), s, CONTAINER_SUMMARY);
        c.keys(
            &format!("system/df Containers[{i}]"),
            s,
            &["SizeRw", "SizeRootFs"],
        );
    }
    let df_vols = c.check_body::<Vec<m::Volume>>("system/df Volumes", &part("Volumes"), &[]);
    for (i, s) in df_vols
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        c.keys(&format!("system/df Volumes[{i}]"), s, VOLUME);
        c.keys(
            &format!("system/df Volumes[{i}]"),
            s,
            &["UsageData.Size", "UsageData.RefCount"],
        );
    }
    c.check_body::<Vec<m::BuildCache>>("system/df BuildCache", &part("BuildCache"), &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (code, events) = api(&d, "GET", &format!("/events?since=0&until={now}"), None);
    assert_eq!(code, 200, "events: {events}");
    let mut n = 0;
    for line in events.lines().filter(|l| !l.trim().is_empty()) {
        n += 1;
        c.check_body::<m::EventMessage>("events line", line, EVENT);
    }
    assert!(n > 3, "events: {events}");

    // Stats of a stopped container (zero times, empty objects) keep the model's types too.
    c.check::<m::ContainerStatsResponse>(
        &d,
        "GET",
        "/containers/wire2/stats?stream=false",
        None,
        200,
        STATS,
    );

    // Wait, then the prunes (after the containers stopped).
    d.ok(&["stop", "-t", "0", "wire1"]);
    c.check::<m::ContainerWaitResponse>(
        &d,
        "POST",
        "/containers/wire1/wait",
        None,
        200,
        &["StatusCode"],
    );
    c.check::<m::ContainerPruneResponse>(
        &d,
        "POST",
        "/containers/prune",
        None,
        200,
        &["ContainersDeleted", "SpaceReclaimed"],
    );
    c.check::<m::ImagePruneResponse>(
        &d,
        "POST",
        "/images/prune",
        None,
        200,
        &["ImagesDeleted", "SpaceReclaimed"],
    );
    c.check::<m::VolumePruneResponse>(
        &d,
        "POST",
        "/volumes/prune",
        None,
        200,
        &["VolumesDeleted", "SpaceReclaimed"],
    );
    c.check::<m::NetworkPruneResponse>(
        &d,
        "POST",
        "/networks/prune",
        None,
        200,
        &["NetworksDeleted"],
    );
    let _ = id;

    assert!(
        c.failures.is_empty(),
        "{} wire mismatches:\n{}",
        c.failures.len(),
        c.failures.join("\n")
    );
}

/// The checker itself: a wrongly typed field and a missing key are both reported.
#[test]
fn checker_reports_type_mismatches_and_missing_keys() {
    let mut c = Checker::default();
    c.check_body::<m::ContainerSummary>("ok", r#"{"Id":"x","Created":1}"#, &["Id", "Created"]);
    assert!(c.failures.is_empty(), "{:?}", c.failures);
    c.check_body::<m::ContainerSummary>("bad type", r#"{"Id":"x","Created":"yesterday"}"#, &[]);
    c.check_body::<m::ContainerSummary>("missing", r#"{"Id":"x"}"#, &["Created", "State.Status"]);
    assert_eq!(c.failures.len(), 3, "{:#?}", c.failures);
    assert!(
        c.failures[0].contains("does not deserialise"),
        "{}",
        c.failures[0]
    );
}
