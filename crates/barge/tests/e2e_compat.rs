//! End-to-end: Docker Engine API conventions clients rely on (issue 9, section 4), each checked
//! with docker-py (or the docker CLI) against dockerd's documented behaviour: list filters
//! (`label` values ANDed, unknown keys refused), the swarm endpoints of a node outside any
//! swarm, exit codes of killed containers, `commit` with changes, `images/load` errors, log
//! drivers, volume prune, the build stream and its `dockerfile` paths, `SOURCE_DATE_EPOCH`,
//! `cp` inside volumes, `diff`, `ps`/`images` columns.

mod common;

use std::process::Command;
use std::sync::LazyLock;

use common::*;

static D: LazyLock<Daemon> = LazyLock::new(|| {
    let d = Daemon::start();
    d.load_layout();
    d
});

const BB: &str = "busybox:1.35";

/// Runs a docker-py program with `c` (a `DockerClient`) and `api` (its `APIClient`) bound
/// to the test daemon; returns its stdout.
fn py(body: &str) -> String {
    let script = format!(
        "import docker, json, io, tarfile, gzip, time\n\
         SOCK = \"{}\"\n\
         c = docker.DockerClient(base_url=\"{}\")\n\
         api = c.api\n\
         def status_of(f, *a, **kw):\n    \
             try:\n        f(*a, **kw)\n        return None\n    \
             except docker.errors.APIError as e:\n        \
                 return (e.status_code, e.explanation)\n\
         {body}",
        D.sock.display(),
        D.host
    );
    python(&script)
}

/// docker-py's `test_build_with_proxy*`: the predefined proxy ARGs reach `RUN` without an
/// `ARG` (a build arg wins over the client's proxy configuration), and a build whose client
/// goes away is cancelled (dockerd's behaviour; docker-py's tests drop build streams unread,
/// and a build going on behind them changed the next test's container count).
#[test]
fn build_proxy_args_and_cancel_on_disconnect() {
    let out = py(r##"
from docker.utils.proxy import ProxyConfig
api._proxy_configs = ProxyConfig(ftp="a", http="b", https="c", no_proxy="d")
df = "\n".join(["FROM busybox:1.35", 'RUN env | grep "FTP_PROXY=XXX"', 'RUN env | grep "ftp_proxy=xxx"',
                 'RUN env | grep "HTTP_PROXY=b"', 'RUN env | grep "no_proxy=d"'])
out = list(api.build(fileobj=io.BytesIO(df.encode()), decode=True, buildargs={"FTP_PROXY": "XXX", "ftp_proxy": "xxx"}))
print([l.get("error") for l in out if "error" in l], out[-1]["stream"].startswith("Successfully built"))
api._proxy_configs = ProxyConfig()
df = "\n".join(["FROM busybox:1.35", "RUN sleep 8 # cancel-marker-4711", "RUN sleep 8"])
client = docker.APIClient(base_url=api.base_url.replace("http+docker://localhost", "unix://" + SOCK))
g = client.build(fileobj=io.BytesIO(df.encode()), decode=True, nocache=True, tag="cancelled-build:1")
next(g)
mine = lambda: [x for x in api.containers(all=True) if "cancel-marker-4711" in x["Command"]]
t = time.time()
while not mine() and time.time() - t < 10:
    time.sleep(0.05)
started = bool(mine())
g.close(); client.close(); del g
t = time.time()
while mine() and time.time() - t < 5:
    time.sleep(0.1)
print(started, mine() == [], time.time() - t < 5, api.images(name="cancelled-build") == [])
"##);
    assert_eq!(out, "[] True\nTrue True True True\n", "{out}");
}

/// `docker ps`-style containers with docker-compose's labels: dockerd ANDs several `label`
/// filters (compose 1.29 lists a service's containers with project + service labels), ORs the
/// values of other keys, and refuses unknown keys and bad values with 400.
#[test]
fn container_filters_follow_dockerd() {
    for (name, svc) in [("lf-web", "web"), ("lf-db", "db")] {
        D.ok(&[
            "create",
            "--name",
            name,
            "--label",
            "com.docker.compose.project=lf",
            "--label",
            &format!("com.docker.compose.service={svc}"),
            BB,
            "true",
        ]);
    }
    let out = py(r##"
def names(**f):
    return sorted(x.name for x in c.containers.list(all=True, filters=f))
print(names(label=["com.docker.compose.project=lf", "com.docker.compose.service=web"]))
print(names(label=["com.docker.compose.project=lf"]))
print(names(label=["com.docker.compose.project=lf", "com.docker.compose.oneoff"]))
print(names(name=["lf-web", "lf-db"]))
print(names(name="^lf-w"))
print(names(label="com.docker.compose.project=lf", status="created"))
print(names(label="com.docker.compose.project=lf", status="exited"))
print(status_of(c.containers.list, filters={"bogus": "1"}))
print(status_of(c.containers.list, filters={"status": "sleeping"}))
print(status_of(c.containers.list, filters={"health": "sick"}))
print(len(api.containers(all=True, filters={"label": "com.docker.compose.project=lf"}, limit=1)))
# the old map form of filters ({"key": {"value": true}}), and a limit that counts stopped
# containers without all=1, as dockerd
r = api.get(api._url("/containers/json"), params={"all": "1", "filters": json.dumps(
    {"label": {"com.docker.compose.project=lf": True, "com.docker.compose.service=db": True}})})
print([x["Names"] for x in r.json()])
print(len(api.containers(limit=2, filters={"label": "com.docker.compose.project=lf"})))
"##);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "['lf-web']", "{out}");
    assert_eq!(lines[1], "['lf-db', 'lf-web']", "{out}");
    assert_eq!(lines[2], "[]", "{out}");
    assert_eq!(lines[3], "['lf-db', 'lf-web']", "{out}");
    assert_eq!(lines[4], "['lf-web']", "{out}");
    assert_eq!(lines[5], "['lf-db', 'lf-web']", "{out}");
    assert_eq!(lines[6], "[]", "{out}");
    assert_eq!(lines[7], "(400, \"invalid filter 'bogus'\")", "{out}");
    assert_eq!(
        lines[8], "(400, \"invalid filter 'status=sleeping'\")",
        "{out}"
    );
    assert_eq!(
        lines[9], "(400, 'Unrecognised filter value for health: sick')",
        "{out}"
    );
    assert_eq!(lines[10], "1", "{out}");
    assert_eq!(lines[11], "[['/lf-db']]", "{out}");
    assert_eq!(lines[12], "2", "{out}");
    D.ok(&["rm", "lf-web", "lf-db"]);
}

/// `ps` filters that look at a container's state and settings: `exited`, `before`/`since`,
/// `volume`, `network`, `publish`/`expose`, `ancestor`, `is-task`.
#[test]
fn container_state_filters() {
    let o = D.barge(&[
        "run", "--name", "sf-a", "--label", "sf=1", BB, "sh", "-c", "exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    D.ok(&[
        "create",
        "--name",
        "sf-b",
        "--label",
        "sf=1",
        "-v",
        "sfvol:/data",
        "--expose",
        "7000",
        BB,
        "true",
    ]);
    D.ok(&[
        "run",
        "-d",
        "--name",
        "sf-c",
        "--label",
        "sf=1",
        "-p",
        "127.0.0.1::7001",
        "--network",
        "bridge",
        BB,
        "sleep",
        "60",
    ]);
    let out = py(r##"
def names(**f):
    f.setdefault("label", "sf=1")
    return sorted(x["Names"][0][1:] for x in api.containers(all=True, filters=f))
print(names(exited=3))
print(names(exited=[0, 3]))
print(names(before="sf-c"))
print(names(since="sf-a"))
print(names(volume="sfvol"))
print(names(volume="/data"))
print(names(network="bridge"))
print(names(expose="7000"))
print(names(expose="7000-7001/tcp"))
port = api.port("sf-c", 7001)[0]["HostPort"]
print(names(publish=port) == ["sf-c"])
print(names(ancestor="busybox:1.35"))
print(names(ancestor="nosuchimage"))
print(names(**{"is-task": "true"}))
print(status_of(api.containers, all=True, filters={"before": "nosuch"})[0])
print(status_of(api.containers, all=True, filters={"publish": "1:2"})[0])
"##);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "['sf-a']", "{out}");
    assert_eq!(lines[1], "['sf-a']", "{out}");
    assert_eq!(lines[2], "['sf-a', 'sf-b']", "{out}");
    assert_eq!(lines[3], "['sf-b', 'sf-c']", "{out}");
    assert_eq!(lines[4], "['sf-b']", "{out}");
    assert_eq!(lines[5], "['sf-b']", "{out}");
    assert_eq!(lines[6], "['sf-a', 'sf-b', 'sf-c']", "{out}");
    assert_eq!(lines[7], "['sf-b']", "{out}");
    assert_eq!(lines[8], "['sf-b', 'sf-c']", "{out}");
    assert_eq!(lines[9], "True", "{out}");
    assert_eq!(lines[10], "['sf-a', 'sf-b', 'sf-c']", "{out}");
    assert_eq!(lines[11], "[]", "{out}");
    assert_eq!(lines[12], "[]", "{out}");
    assert_eq!(lines[13], "404", "{out}");
    assert_eq!(lines[14], "400", "{out}");
    D.ok(&["rm", "-f", "-v", "sf-a", "sf-b", "sf-c"]);
    let _ = D.barge(&["volume", "rm", "sfvol"]);
}

/// Images, networks, volumes and events: every `label` filter must match (dockerd's
/// `MatchKVList`); unknown keys are refused.
#[test]
fn label_filters_are_anded_everywhere() {
    let out = py(r##"
import os
for n, svc in (("lfn-a", "a"), ("lfn-b", "b")):
    c.networks.create(n, labels={"proj": "lfn", "svc": svc})
    c.volumes.create(n, labels={"proj": "lfn", "svc": svc})
print(sorted(n.name for n in c.networks.list(filters={"label": ["proj=lfn", "svc=a"]})))
print(sorted(n.name for n in c.networks.list(filters={"label": ["proj=lfn"]})))
print(sorted(n.name for n in c.networks.list(filters={"name": ["lfn-a", "lfn-b"]})))
print(sorted(n.name for n in c.networks.list(filters={"driver": "bridg"})) == [])
print(status_of(c.networks.list, filters={"bogus": "x"}))
print(status_of(c.networks.list, filters={"type": "weird"})[0])
print(sorted(v.name for v in c.volumes.list(filters={"label": ["proj=lfn", "svc=b"]})))
print(status_of(c.volumes.list, filters={"bogus": "x"})[0])
img = c.images.get("busybox:1.35")
print(len(c.images.list(filters={"label": ["nosuch=1"]})))
print(status_of(c.images.list, filters={"bogus": "x"}))
print(len(c.images.list(filters={"reference": ["busybox:1.35", "nosuch"]})))
print(len(c.images.list(filters={"dangling": "false", "reference": "busybox:1.35"})))
print(status_of(c.images.list, filters={"dangling": "maybe"}))
# events: label filters AND over the actor's attributes
since = time.time() - 600
until = time.time() + 1
for n, svc in (("lfe-a", "a"), ("lfe-b", "b")):
    c.containers.create("busybox:1.35", ["true"], name=n, labels={"proj": "lfn", "svc": svc}).remove()
until = time.time() + 1
ev = api.events(since=since, until=until, decode=True,
                filters={"type": "container", "event": "create", "label": ["proj=lfn", "svc=b"]})
print(sorted(e["Actor"]["Attributes"]["name"] for e in ev))
for n in ("lfn-a", "lfn-b"):
    c.networks.get(n).remove()
    c.volumes.get(n).remove()
"##);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "['lfn-a']", "{out}");
    assert_eq!(lines[1], "['lfn-a', 'lfn-b']", "{out}");
    assert_eq!(lines[2], "['lfn-a', 'lfn-b']", "{out}");
    assert_eq!(lines[3], "True", "{out}");
    assert_eq!(lines[4], "(400, \"invalid filter 'bogus'\")", "{out}");
    assert_eq!(lines[5], "400", "{out}");
    assert_eq!(lines[6], "['lfn-b']", "{out}");
    assert_eq!(lines[7], "400", "{out}");
    assert_eq!(lines[8], "0", "{out}");
    assert_eq!(lines[9], "(400, \"invalid filter 'bogus'\")", "{out}");
    assert_eq!(lines[10], "1", "{out}");
    assert_eq!(lines[11], "1", "{out}");
    assert_eq!(
        lines[12], "(400, \"invalid filter 'dangling=maybe'\")",
        "{out}"
    );
    assert_eq!(lines[13], "['lfe-b']", "{out}");
}

/// A dockerd outside any swarm answers the cluster endpoints with 503 and its
/// "not a swarm manager" message (not 404), which clients show as is.
#[test]
fn swarm_endpoints_answer_503_like_a_node_outside_a_swarm() {
    const MSG: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";
    let out = py(r##"
for f in (api.inspect_swarm, api.services, api.nodes, api.tasks, api.secrets, api.configs):
    print(status_of(f))
print(status_of(api.leave_swarm))
"##);
    let lines: Vec<&str> = out.lines().collect();
    for l in &lines[..6] {
        assert_eq!(*l, format!("(503, '{MSG}')"), "{out}");
    }
    assert_eq!(
        lines[6], "(503, 'This node is not part of a swarm')",
        "{out}"
    );
    let o = D.docker(&["node", "ls"]);
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o).trim(),
        format!("Error response from daemon: {MSG}"),
        "{}",
        stderr(&o)
    );
}

/// `kill` (SIGKILL) then `inspect`: exit code 137 as dockerd records 128+signal; a SIGTERM'd
/// shell: 143.
#[test]
fn killed_containers_report_the_signal_exit_code() {
    let out = py(r##"
k = c.containers.run("busybox:1.35", ["sleep", "60"], detach=True, name="kill137")
k.kill()
print(k.wait()["StatusCode"])
k.reload()
print(k.attrs["State"]["ExitCode"], k.attrs["State"]["Status"])
t = c.containers.run("busybox:1.35", ["sleep", "60"], detach=True, name="kill143", init=True)
t.kill(signal="SIGTERM")
print(t.wait()["StatusCode"])
k.remove(); t.remove()
"##);
    assert_eq!(out, "137\n137 exited\n143\n", "{out}");
}

/// `commit` returns the new image's ID and applies `changes` (Dockerfile instructions, one per
/// value or several on lines of one value).
#[test]
fn commit_returns_the_id_and_applies_changes() {
    let out = py(r##"
k = c.containers.run("busybox:1.35", ["sh", "-c", "echo hi > /made"], detach=True, name="commitme")
k.wait()
img = k.commit(repository="committed", tag="v1", changes=['ENV FOO=bar', 'CMD ["cat", "/made"]', 'LABEL a=b'])
print(img.id.startswith("sha256:") and img.id == c.images.get("committed:v1").id)
cfg = img.attrs["Config"]
print("FOO=bar" in cfg["Env"], cfg["Cmd"], cfg["Labels"])
r = api.commit("commitme", repository="committed", tag="v2", changes="EXPOSE 80\nWORKDIR /tmp")
print(sorted(r.keys()), r["Id"].startswith("sha256:"))
cfg2 = c.images.get("committed:v2").attrs["Config"]
print(cfg2["ExposedPorts"], cfg2["WorkingDir"])
print(c.containers.run("committed:v1", remove=True).decode().strip())
k.remove()
c.images.remove("committed:v1"); c.images.remove("committed:v2")
"##);
    assert_eq!(
        out, "True\nTrue ['cat', '/made'] {'a': 'b'}\n['Id'] True\n{'80/tcp': {}} /tmp\nhi\n",
        "{out}"
    );
}

/// `POST /images/load` of something that is not an image archive: dockerd answers 200 and
/// reports the error in the stream, which docker-py raises as `ImageLoadError`.
#[test]
fn loading_a_non_archive_reports_the_error_in_the_stream() {
    let out = py(r##"
try:
    c.images.load(b"this is not an image archive")
    print("loaded?")
except docker.errors.ImageLoadError as e:
    print("ImageLoadError", str(e))
"##);
    assert_eq!(
        out.trim(),
        "ImageLoadError Error processing tar file(exit status 1): unexpected EOF"
    );
}

/// An unknown log driver: dockerd's "logger: no log driver named 'X' is registered" (400).
#[test]
fn unknown_log_driver_is_refused_with_dockerds_message() {
    let out = py(r##"
lc = docker.types.LogConfig(type="nosuchdriver")
print(status_of(c.containers.create, "busybox:1.35", ["true"], log_config=lc))
"##);
    assert_eq!(
        out.trim(),
        "(400, \"logger: no log driver named 'nosuchdriver' is registered\")"
    );
}

/// Cases of docker-py's own integration suite (6.1.3) that dockerd 20.10 passes: IPAM
/// `AuxiliaryAddresses` echoed and never handed out, a network name with a space, a subnet
/// with host bits taken as its network by a pre-1.44 client (refused from 1.44), an unknown
/// volume driver is 404, `kill` (SIGKILL) answers once the container stopped, and `rm` of a
/// running container is refused in dockerd 20.10's words.
#[test]
fn docker_py_suite_networks_volumes_kill_and_rm() {
    let out = py(r##"
from docker.types import IPAMConfig, IPAMPool
pool = IPAMPool(subnet="172.29.0.0/16", iprange="172.29.5.0/29", gateway="172.29.0.1",
                aux_addresses={"a": "172.29.5.1", "b": "172.29.5.2"})
net = api.create_network("aux net 1", ipam=IPAMConfig(driver="default", pool_configs=[pool]))
cfg = api.inspect_network("aux net 1")["IPAM"]["Config"]
print(cfg[0]["AuxiliaryAddresses"])
k = api.create_container("busybox:1.35", ["sleep", "30"], host_config=api.create_host_config(network_mode="aux net 1"))
api.start(k)
print(api.inspect_container(k)["NetworkSettings"]["Networks"]["aux net 1"]["IPAddress"])
try:
    api.remove_container(k)
except docker.errors.APIError as e:
    print(e.status_code, e.explanation.startswith("You cannot remove a running container "), "Stop the container before attempting removal or force remove" in e.explanation)
api.kill(k)
st = api.inspect_container(k)["State"]
print(st["Running"], st["ExitCode"])
api.remove_container(k)
api.remove_network("aux net 1")
old = docker.APIClient(base_url=api.base_url.replace("http+docker://localhost", "unix://" + SOCK), version="1.41")
v6 = IPAMConfig(driver="default", pool_configs=[IPAMPool(subnet="fd00:389::1/64", gateway="fd00:389::ffff")])
n = old.create_network("v6legacy", enable_ipv6=True, ipam=v6)
print([x["Subnet"] for x in old.inspect_network(n["Id"])["IPAM"]["Config"] if ":" in x["Subnet"]])
old.remove_network(n["Id"])
try:
    api.create_network("v6new", enable_ipv6=True, ipam=v6)
except docker.errors.APIError as e:
    print(e.status_code)
try:
    api.create_volume("perfectcherryblossom", "invalid.driver")
except docker.errors.NotFound as e:
    print(404, e.explanation)
# test_create_check_duplicate: before API 1.44 a duplicate name is refused only with
# CheckDuplicate; without it dockerd 20.10 creates the network and warns, and the name is
# then ambiguous.
d1 = old.create_network("dupnet")
try:
    old.create_network("dupnet", check_duplicate=True)
except docker.errors.APIError as e:
    print(e.status_code)
d2 = old.create_network("dupnet", check_duplicate=False)
print(d2["Warning"] == "Network with name dupnet (id : %s) already exists" % d1["Id"])
try:
    old.inspect_network("dupnet")
except docker.errors.APIError as e:
    print(e.status_code, e.explanation)
try:
    old.remove_network("dupnet")
except docker.errors.APIError as e:
    print(e.status_code, e.explanation)
try:
    api.create_network("dupnet")
except docker.errors.APIError as e:
    print(e.status_code)
old.remove_network(d1["Id"])
old.remove_network(d2["Id"])
# test_create_with_runtime: docker-py sends create_container(runtime=...) outside HostConfig;
# a configured runtime's name is taken, another ignored (dockerd ignores the field).
for rt in ("runc", "nvidia"):
    c = api.create_container("busybox:1.35", ["true"], runtime=rt)
    print(rt, api.inspect_container(c)["HostConfig"]["Runtime"])
    api.remove_container(c)
"##);
    assert_eq!(
        out,
        "{'a': '172.29.5.1', 'b': '172.29.5.2'}\n172.29.5.3\n409 True True\nFalse 137\n\
         ['fd00:389::/64']\n400\n\
         404 create perfectcherryblossom: error looking up volume plugin invalid.driver: plugin \"invalid.driver\" not found\n\
         409\nTrue\n400 2 matches found based on name: network dupnet is ambiguous\n\
         400 network dupnet is ambiguous (2 matches found on name)\n409\nrunc runc\nnvidia barge\n",
        "{out}"
    );
}

/// docker-py's `test_connect_with_links`: a running container disconnected from its only
/// network and connected again with `Links` gets its embedded DNS back, echoes the links, and
/// resolves the link alias (to the linked container's address), which others do not.
#[test]
fn reconnect_with_links_resolves_the_alias() {
    let out = py(r##"
api.create_network("lnk-net")
pyimg = "debian-python:bookworm"
a = api.create_container(pyimg, ["sleep", "120"], name="lnk-a", host_config=api.create_host_config(network_mode="lnk-net"))
api.start(a)
api.disconnect_container_from_network(a, "lnk-net")
api.connect_container_to_network(a, "lnk-net", links=[("lnk-b", "bar")])
print(api.inspect_container(a)["NetworkSettings"]["Networks"]["lnk-net"]["Links"])
b = api.create_container(pyimg, ["sleep", "120"], name="lnk-b", host_config=api.create_host_config(network_mode="lnk-net"))
api.start(b)
ip_b = api.inspect_container(b)["NetworkSettings"]["Networks"]["lnk-net"]["IPAddress"]
def resolve(c, name):
    e = api.exec_create(c, ["python3", "-c", "import socket,sys\ntry: print(socket.gethostbyname(sys.argv[1]))\nexcept OSError: print('none')", name])
    return api.exec_start(e).decode().strip()
print(resolve(a, "bar") == ip_b, resolve(a, "lnk-b") == ip_b, resolve(b, "bar"))
for c in (a, b):
    api.remove_container(c, force=True)
api.remove_network("lnk-net")
"##);
    assert_eq!(out, "['lnk-b:bar']\nTrue True none\n", "{out}");
}

/// docker-py's `CommitTest` (API 1.41): a committed image names its container
/// (`Container`), the container's configuration (`ContainerConfig.Image`) and the image it was
/// made on (`Parent`); API 1.45 dropped `Container`/`ContainerConfig` from image inspect.
#[test]
fn commit_records_container_config_and_parent() {
    let out = py(r##"
old = docker.APIClient(base_url=api.base_url.replace("http+docker://localhost", "unix://" + SOCK), version="1.41")
k = old.create_container("busybox:1.35", ["sh", "-c", "echo x > /test"])
old.start(k); old.wait(k)
r = old.commit(k["Id"])
img = old.inspect_image(r["Id"])
base = old.inspect_image("busybox:1.35")["Id"]
print(img["Container"].startswith(k["Id"]), img["ContainerConfig"]["Image"], img["Parent"] == base)
print("Container" in api.inspect_image(r["Id"]), old.inspect_image("busybox:1.35")["Container"] == "")
old.remove_container(k); old.remove_image(r["Id"])
"##);
    assert_eq!(out, "True busybox:1.35 True\nFalse True\n", "{out}");
}

/// `volumes/prune` (API ≥ 1.42): anonymous volumes only, unless the `all=true` filter.
#[test]
fn volume_prune_takes_anonymous_volumes_unless_all() {
    let out = py(r##"
c.volumes.create("vp-named", labels={"vp": "1"})
k = c.containers.create("busybox:1.35", ["true"], volumes=["/anon"], labels={"vp": "1"}, name="vp-c")
anon = [m["Name"] for m in k.attrs["Mounts"]][0]
k.remove()
r = c.volumes.prune()
print(anon in (r["VolumesDeleted"] or []), "vp-named" in (r["VolumesDeleted"] or []))
r = c.volumes.prune(filters={"all": "true", "label": "vp=1"})
print("vp-named" in (r["VolumesDeleted"] or []))
# A client of API 1.41 gets dockerd's older behaviour: every unused volume.
c.volumes.create("vp-old", labels={"vp": "2"})
old = docker.APIClient(base_url=api.base_url.replace("http+docker://localhost", "unix://" + SOCK), version="1.41")
r = old.prune_volumes(filters={"label": "vp=2"})
print(r["VolumesDeleted"])
"##);
    assert_eq!(out, "True False\nTrue\n['vp-old']\n", "{out}");
}

/// Builds an uncompressed tar (as bytes) from (name, content) pairs in Python source.
const MKTAR: &str = r##"
def mktar(files, gz=False):
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w") as t:
        for name, data in files:
            data = data.encode()
            ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = 0o644
            t.addfile(ti, io.BytesIO(data))
    raw = b.getvalue()
    return io.BytesIO(gzip.compress(raw) if gz else raw)
def build(files, gz=False, **kw):
    chunks = list(api.build(fileobj=mktar(files, gz), custom_context=True, decode=True,
                            encoding="gzip" if gz else None, rm=True, **kw))
    return chunks
def image_id(chunks):
    return [ch["aux"]["ID"] for ch in chunks if "aux" in ch]
"##;

/// `POST /build`: dockerd's JSON message stream (`stream` lines with `RUN`'s stdout and
/// stderr, `aux.ID`, `error`+`errorDetail` for a failed step), blank lines and comments between
/// instructions, `cachefrom` and `extrahosts`.
#[test]
fn build_stream_and_parameters() {
    let out = py(&format!(
        "{MKTAR}{}",
        r##"
df = """# a comment

FROM busybox:1.35

# another comment
RUN echo to-stdout && echo to-stderr >&2

RUN cat /etc/hosts | grep -c buildhost.example
"""
ch = build([("Dockerfile", df)], cache_from=["busybox:1.35"], extra_hosts={"buildhost.example": "10.9.8.7"}, nocache=True)
text = "".join(x.get("stream", "") for x in ch)
print(all(set(x) <= {"stream", "aux", "error", "errorDetail", "status", "id", "progressDetail"} for x in ch))
print("to-stdout" in text, "to-stderr" in text)
print("\n1\n" in text)
ids = image_id(ch)
print(len(ids) == 1 and ids[0].startswith("sha256:"))
print(text.rstrip().splitlines()[-1].startswith("Successfully built"))
bad = build([("Dockerfile", "FROM busybox:1.35\nRUN exit 7\n")])
err = [x for x in bad if "error" in x]
print(len(err), err[0]["error"] == err[0]["errorDetail"]["message"])
print("returned a non-zero code: 7" in err[0]["error"])
"##
    ));
    assert_eq!(
        out, "True\nTrue True\nTrue\nTrue\nTrue\n1 True\nTrue\n",
        "{out}"
    );
}

/// `POST /build` as docker-py's own integration tests read it: the last line is
/// `Successfully tagged` (after `aux`), a step's stderr is wrapped in dockerd's red colour
/// codes, every repeated `extrahosts` reaches `/etc/hosts`, and `cachefrom` makes only those
/// images' histories the cache (a name that does not resolve: no cache at all).
#[test]
fn build_stream_order_stderr_extra_hosts_and_cache_from() {
    let out = py(&format!(
        "{MKTAR}{}",
        r##"
df = "FROM busybox:1.35\nENV FOO=bar\nRUN echo one > /one\nRUN sh -c '>&2 echo oops'\nRUN cat /etc/hosts\n"
ch = build([("Dockerfile", df)], tag="order-1", extra_hosts={"a.test": "10.1.1.1", "b.test": "10.1.1.2"})
print(repr(ch[-1].get("stream")), "aux" in ch[-3], ch[-2].get("stream", "").startswith("Successfully built"))
streams = [x.get("stream") for x in ch]
print("\x1b[91moops\n\x1b[0m" in streams)
text = "".join(s or "" for s in streams)
print("10.1.1.1\ta.test" in text, "10.1.1.2\tb.test" in text)
ch = build([("Dockerfile", df)], tag="order-2", cache_from=["order-1"], extra_hosts={"a.test": "10.1.1.1", "b.test": "10.1.1.2"})
print(sum("Using cache" in x.get("stream", "") for x in ch))
ch = build([("Dockerfile", df)], tag="order-3", cache_from=["nosuchtag"], extra_hosts={"a.test": "10.1.1.1", "b.test": "10.1.1.2"})
print(sum("Using cache" in x.get("stream", "") for x in ch))
ch = build([("Dockerfile", df)], extra_hosts={"a.test": "10.1.1.1", "b.test": "10.1.1.2"})
print(ch[-1].get("stream", "").startswith("Successfully built"), sum("Using cache" in x.get("stream", "") for x in ch))
for t in ("order-1", "order-2", "order-3"):
    api.remove_image(t)
"##
    ));
    assert_eq!(
        out, "'Successfully tagged order-1:latest\\n' True True\nTrue\nTrue True\n4\n0\nTrue 4\n",
        "{out}"
    );
}

/// The `dockerfile` parameter: nested, absolute (from the context root), `../` (scoped to
/// the context, as dockerd resolves it), a Dockerfile outside the context (docker-py sends it
/// inside the tar), and a gzip-compressed context.
#[test]
fn build_dockerfile_paths_and_gzip_context() {
    let ctx = tempdir_in(&D.dir);
    std::fs::create_dir_all(ctx.join("ctx")).unwrap();
    std::fs::write(ctx.join("ctx/f.txt"), "ctx-file\n").unwrap();
    std::fs::write(
        ctx.join("Dockerfile.outside"),
        "FROM busybox:1.35\nCOPY f.txt /f.txt\nLABEL where=outside\n",
    )
    .unwrap();
    let out = py(&format!(
        "{MKTAR}
ctxdir = {ctx:?}
{}",
        r##"
def label(chunks):
    ids = image_id(chunks)
    if not ids:
        return [x.get("error") for x in chunks if "error" in x]
    return c.images.get(ids[0]).attrs["Config"]["Labels"]["where"]
nested = [("sub/dir/Dockerfile.x", "FROM busybox:1.35\nLABEL where=nested\n")]
print(label(build(nested, dockerfile="sub/dir/Dockerfile.x")))
print(label(build(nested, dockerfile="/sub/dir/Dockerfile.x")))
print(label(build([("Dockerfile", "FROM busybox:1.35\nLABEL where=root\n")], dockerfile="../Dockerfile")))
print(label(build(nested, gz=True, dockerfile="sub/dir/Dockerfile.x")))
img, logs = c.images.build(path=ctxdir + "/ctx", dockerfile=ctxdir + "/Dockerfile.outside", rm=True)
print(img.attrs["Config"]["Labels"]["where"])
img, logs = c.images.build(path=ctxdir + "/ctx", dockerfile="../Dockerfile.outside", rm=True)
print(img.attrs["Config"]["Labels"]["where"])
print([x.get("error") for x in build(nested, dockerfile="nope")][-1])
"##
    ).replace("{ctx:?}", &format!("{:?}", ctx.display().to_string())));
    assert_eq!(
        out,
        "nested\nnested\nroot\nnested\noutside\noutside\nCannot locate specified Dockerfile: nope\n",
        "{out}"
    );
}

fn tempdir_in(base: &std::path::Path) -> std::path::PathBuf {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let p = base.join(format!("compat-{n}"));
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// `SOURCE_DATE_EPOCH` in the client's environment is sent as the build argument (as
/// `docker buildx build` does), so two builds give the same image; `--build-arg` wins.
#[test]
fn source_date_epoch_from_the_environment() {
    let ctx = tempdir_in(&D.dir);
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:1.35\nRUN echo x > /x\n",
    )
    .unwrap();
    let build = |env: Option<&str>, extra: &[&str]| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_barge"));
        cmd.env("BARGE_HOST", &D.host)
            .env("DOCKER_CONFIG", D.dir.join("docker-config"))
            .env_remove("SOURCE_DATE_EPOCH");
        if let Some(e) = env {
            cmd.env("SOURCE_DATE_EPOCH", e);
        }
        let o = cmd
            .args(["build", "--no-cache", "-q"])
            .args(extra)
            .arg(&ctx)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).trim().to_string()
    };
    let a = build(Some("1700000000"), &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b = build(Some("1700000000"), &[]);
    assert_eq!(a, b);
    let created = D.ok(&["image", "inspect", "-f", "{{.Created}}", &a]);
    assert!(created.starts_with("2023-11-14T22:13:20"), "{created}");
    // --build-arg takes precedence over the environment.
    let c = build(
        Some("1700000000"),
        &["--build-arg", "SOURCE_DATE_EPOCH=1600000000"],
    );
    let created = D.ok(&["image", "inspect", "-f", "{{.Created}}", &c]);
    assert!(created.starts_with("2020-09-13T12:26:40"), "{created}");
    // Without it, two builds differ (their times do).
    let d = build(None, &[]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let e = build(None, &[]);
    assert_ne!(d, e);
}

/// `GET/PUT/HEAD /containers/{id}/archive` inside volumes and bind mounts, running and
/// stopped (dockerd sees the container's mounts).
#[test]
fn archive_inside_volumes_and_binds() {
    let bind = tempdir_in(&D.dir);
    std::fs::write(bind.join("b.txt"), "from-bind\n").unwrap();
    let out = py(&format!(
        "bind = {:?}\n{}",
        bind.display().to_string(),
        r##"
def read(k, path):
    bits, st = k.get_archive(path)
    t = tarfile.open(fileobj=io.BytesIO(b"".join(bits)))
    names = t.getnames()
    f = [m for m in t.getmembers() if m.isfile()]
    return st["name"], names, (t.extractfile(f[0]).read().decode().strip() if f else None)
k = c.containers.run("busybox:1.35", ["sh", "-c", "echo in-vol > /vol1/f; sleep 60"], detach=True,
                     name="arch-vol", volumes={"archvol": {"bind": "/vol1", "mode": "rw"}, bind: {"bind": "/bnd", "mode": "rw"}},
                     tmpfs={"/tmpd": ""})
time.sleep(1)
print(read(k, "/vol1/f"))
print(read(k, "/vol1")[0:2])
print(read(k, "/bnd/b.txt"))
r = api.head(api._url("/containers/{0}/archive", k.id), params={"path": "/vol1/f"})
print(r.status_code, json.loads(__import__("base64").b64decode(r.headers["X-Docker-Container-Path-Stat"]))["name"])
ti = tarfile.TarInfo("put.txt"); data = b"put-in\n"; ti.size = len(data)
b = io.BytesIO()
with tarfile.open(fileobj=b, mode="w") as t: t.addfile(ti, io.BytesIO(data))
print(k.put_archive("/vol1", b.getvalue()), k.put_archive("/tmpd", b.getvalue()))
print(k.exec_run(["cat", "/vol1/put.txt", "/tmpd/put.txt"]).output.decode().split())
k.stop(timeout=0)
print(read(k, "/vol1/put.txt"))
print(read(k, "/vol1")[0:2])
print(read(k, "/bnd/b.txt")[2])
print(k.put_archive("/bnd", b.getvalue()))
print(status_of(k.get_archive, "/vol1/nope")[0])
k.remove(v=True)
"##
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "('f', ['f'], 'in-vol')", "{out}");
    assert_eq!(lines[1], "('vol1', ['vol1', 'vol1/f'])", "{out}");
    assert_eq!(lines[2], "('b.txt', ['b.txt'], 'from-bind')", "{out}");
    assert_eq!(lines[3], "200 f", "{out}");
    assert_eq!(lines[4], "True True", "{out}");
    assert_eq!(lines[5], "['put-in', 'put-in']", "{out}");
    assert_eq!(lines[6], "('put.txt', ['put.txt'], 'put-in')", "{out}");
    assert_eq!(
        lines[7], "('vol1', ['vol1', 'vol1/f', 'vol1/put.txt'])",
        "{out}"
    );
    assert_eq!(lines[8], "from-bind", "{out}");
    assert_eq!(lines[9], "True", "{out}");
    assert_eq!(lines[10], "404", "{out}");
    assert_eq!(
        std::fs::read_to_string(bind.join("put.txt")).unwrap(),
        "put-in\n"
    );
    let _ = D.barge(&["volume", "rm", "archvol"]);
}

/// `diff` reports only what the process changed: not the runtime's mount points
/// (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, the init) nor their parents.
#[test]
fn diff_leaves_out_the_runtime_files() {
    let out = py(r##"
k = c.containers.run("busybox:1.35", ["true"], detach=True, name="diff-quiet", init=True)
k.wait()
print(k.diff())
m = c.containers.run("busybox:1.35", ["sh", "-c", "mkdir -p /etc/app && echo x > /etc/app/conf"], detach=True, name="diff-some")
m.wait()
print(sorted((d["Path"], d["Kind"]) for d in m.diff()))
k.remove(); m.remove()
"##);
    assert_eq!(
        out, "[]\n[('/etc', 0), ('/etc/app', 1), ('/etc/app/conf', 1)]\n",
        "{out}"
    );
}

/// `docker ps` shows no PORTS for a `--network host` container (its image's EXPOSE included),
/// and `docker images` shows `N/A` as CREATED for an image without a creation time.
#[test]
fn ps_ports_of_host_network_and_images_without_created() {
    D.ok(&[
        "run",
        "-d",
        "--name",
        "ps-host",
        "--network",
        "host",
        "--expose",
        "8080",
        BB,
        "sleep",
        "60",
    ]);
    let ports = D.docker_ok(&["ps", "--filter", "name=ps-host", "--format", "{{.Ports}}"]);
    assert_eq!(ports.trim(), "");
    let ports = D.ok(&["ps", "--filter", "name=ps-host", "--format", "{{.Ports}}"]);
    assert_eq!(ports.trim(), "");
    D.ok(&["rm", "-f", "ps-host"]);
    // A docker-save archive whose config has no `created`.
    let out = py(r##"
import hashlib
layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w") as t:
    ti = tarfile.TarInfo("hello"); ti.size = 3; t.addfile(ti, io.BytesIO(b"hi\n"))
layer = layer.getvalue()
diff = "sha256:" + hashlib.sha256(layer).hexdigest()
cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/hello"]},
                  "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
cfgname = hashlib.sha256(cfg).hexdigest() + ".json"
manifest = json.dumps([{"Config": cfgname, "RepoTags": ["nocreated:1"], "Layers": ["l/layer.tar"]}]).encode()
b = io.BytesIO()
with tarfile.open(fileobj=b, mode="w") as t:
    for name, data in ((cfgname, cfg), ("l/layer.tar", layer), ("manifest.json", manifest)):
        ti = tarfile.TarInfo(name); ti.size = len(data); t.addfile(ti, io.BytesIO(data))
c.images.load(b.getvalue())
print([i["Created"] for i in api.images(name="nocreated")])
"##);
    assert_eq!(out.trim(), "[0]", "{out}");
    let created = D.ok(&["images", "nocreated", "--format", "{{.CreatedSince}}"]);
    assert_eq!(created.trim(), "N/A");
    D.ok(&["rmi", "nocreated:1"]);
}

/// `HostConfig` namespace, cgroup and group fields are honoured and echoed by inspect:
/// `PidMode`/`UTSMode` `host`, `CgroupnsMode`, `GroupAdd` (names and numbers), `CpusetCpus`,
/// `MemorySwappiness` (cgroup v1), `DeviceCgroupRules`, `Isolation`, `VolumeDriver`; bad
/// values are refused with dockerd's messages.
#[test]
fn host_config_fields_are_honoured_and_echoed() {
    let out = py(r##"
import os, socket
host_cgns = os.readlink("/proc/self/ns/cgroup")
script = ("echo pid=$$; hostname; readlink /proc/self/ns/cgroup; id -G; "
          "grep Cpus_allowed_list /proc/self/status | cut -f2; "
          "mknod /tmp/lc c 10 237 && (exec 3</tmp/lc) && echo dev-open")
k = c.containers.run("debian-python:bookworm", ["sh", "-c", script], detach=True, name="hc-host",
                     pid_mode="host", uts_mode="host", cgroupns="host", group_add=["daemon", "4321"],
                     cpuset_cpus="0", mem_swappiness=10, device_cgroup_rules=["c 10:237 rwm"],
                     isolation="default", volume_driver="local", volumes=["/v"])
k.wait()
lines = k.logs().decode().split("\n")
print(lines[0] != "pid=1", lines[1] == socket.gethostname(), lines[2] == host_cgns)
print(sorted(lines[3].split()), lines[4], lines[5])
h = k.attrs["HostConfig"]
print(h["PidMode"], h["UTSMode"], h["CgroupnsMode"], h["GroupAdd"], h["CpusetCpus"],
      h["DeviceCgroupRules"], h["Isolation"], h["VolumeDriver"], h["MemorySwappiness"])
p = c.containers.run("debian-python:bookworm", ["sh", "-c", script], detach=True, name="hc-private",
                     cgroupns="private")
p.wait()
lines = p.logs().decode().split("\n")
print(lines[0] == "pid=1", lines[1] == p.id[:12], lines[2] != host_cgns, lines[3])
print("dev-open" in p.logs().decode(), p.attrs["HostConfig"]["CgroupnsMode"], p.attrs["HostConfig"]["MemorySwappiness"])
d = c.containers.create("busybox:1.35", ["true"], name="hc-default")
print(d.attrs["HostConfig"]["CgroupnsMode"])
for kw in (dict(isolation="hyperv"), dict(cgroupns="sideways"), dict(device_cgroup_rules=["x 1:2 r"]),
           dict(mem_swappiness=101), dict(cpuset_cpus="0-4096"), dict(pid_mode="other"),
           dict(uts_mode="host", hostname="named"), dict(volume_driver="nosuch", volumes=["/v"])):
    print(status_of(c.containers.create, "busybox:1.35", ["true"], **kw))
g = c.containers.create("busybox:1.35", ["true"], name="hc-badgroup", group_add=["nosuchgroup"])
print(status_of(g.start))
k.remove(v=True); p.remove(); d.remove(); g.remove()
"##);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "True True True", "{out}");
    assert_eq!(lines[1], "['0', '1', '4321'] 0 dev-open", "{out}");
    assert_eq!(
        lines[2], "host host host ['daemon', '4321'] 0 ['c 10:237 rwm'] default local 10",
        "{out}"
    );
    assert_eq!(lines[3], "True True True 0", "{out}");
    assert_eq!(lines[4], "False private None", "{out}");
    assert_eq!(lines[5], "host", "{out}");
    assert_eq!(
        lines[6], r#"(400, 'Invalid isolation: "hyperv" - linux only supports \'default\'')"#,
        "{out}"
    );
    assert_eq!(
        lines[7], "(400, 'invalid cgroup namespace mode: sideways')",
        "{out}"
    );
    assert_eq!(
        lines[8], "(400, \"invalid device cgroup format 'x 1:2 r'\")",
        "{out}"
    );
    assert_eq!(
        lines[9], "(400, 'Invalid value: 101, valid memory swappiness range is 0-100')",
        "{out}"
    );
    assert!(
        lines[10].starts_with("(400, 'Requested CPUs are not available - requested 0-4096"),
        "{out}"
    );
    assert!(lines[11].starts_with("(400, "), "{out}");
    assert_eq!(
        lines[12], "(400, 'Conflicting options: hostname and the UTS mode')",
        "{out}"
    );
    assert_eq!(
        lines[13], "(400, 'error looking up volume plugin nosuch: plugin \"nosuch\" not found')",
        "{out}"
    );
    assert!(
        lines[14].contains("Unable to find group nosuchgroup"),
        "{out}"
    );
}

/// A MAC address per endpoint (`EndpointsConfig.MacAddress`, and the legacy container-level
/// `Config.MacAddress` for the primary network) is the interface's, and shown by inspect with
/// the endpoint's `DriverOpts`.
#[test]
fn endpoint_mac_address_and_driver_opts() {
    let out = py(r##"
c.networks.create("macnet")
nc = api.create_networking_config({"macnet": api.create_endpoint_config(
    mac_address="02:42:0a:0b:0c:0d", driver_opt={"com.example.opt": "1"})})
cid = api.create_container("busybox:1.35", ["cat", "/sys/class/net/eth0/address"],
                           networking_config=nc, host_config=api.create_host_config(network_mode="macnet"),
                           name="mac-ep")["Id"]
api.start(cid); api.wait(cid)
print(api.logs(cid).decode().strip())
ep = api.inspect_container(cid)["NetworkSettings"]["Networks"]["macnet"]
print(ep["MacAddress"], ep["DriverOpts"])
k = c.containers.run("busybox:1.35", ["cat", "/sys/class/net/eth0/address"], mac_address="02:42:01:02:03:04",
                     detach=True, name="mac-legacy")
k.wait()
print(k.logs().decode().strip())
print(status_of(c.containers.create, "busybox:1.35", ["true"], mac_address="nonsense")[0])
api.remove_container(cid); k.remove()
c.networks.get("macnet").remove()
"##);
    assert_eq!(
        out,
        "02:42:0a:0b:0c:0d\n02:42:0a:0b:0c:0d {'com.example.opt': '1'}\n02:42:01:02:03:04\n400\n",
        "{out}"
    );
}

/// Legacy links (`--link NAME:ALIAS` on the default bridge): the alias, hostname and name of
/// the target in `/etc/hosts`, dockerd's `ALIAS_PORT_…`/`ALIAS_NAME`/`ALIAS_ENV_…` variables,
/// inspect's `/TARGET:/THIS/ALIAS`, `DELETE /containers/THIS/ALIAS?link=1`, and dockerd's
/// errors for a missing or stopped target and host networking.
#[test]
fn legacy_links() {
    let out = py(r##"
t = api.create_container("busybox:1.35", ["sleep", "60"], ports=[6379, (53, "udp")], environment={"SECRET": "s3"},
                         name="lnk-target")["Id"]
api.start(t)
tip = api.inspect_container(t)["NetworkSettings"]["Networks"]["bridge"]["IPAddress"]
thost = api.inspect_container(t)["Config"]["Hostname"]
k = c.containers.run("busybox:1.35", ["sh", "-c", "cat /etc/hosts; env | sort"], links={"lnk-target": "db-main"},
                     detach=True, name="lnk-client")
k.wait()
out = k.logs().decode()
print(f"{tip}\tdb-main {thost} lnk-target" in out.splitlines())
env = dict(l.split("=", 1) for l in out.splitlines() if "=" in l and not l.startswith(tip))
print(env.get("DB_MAIN_PORT") == f"udp://{tip}:53", env.get("DB_MAIN_PORT_6379_TCP") == f"tcp://{tip}:6379",
      env.get("DB_MAIN_PORT_6379_TCP_ADDR") == tip, env.get("DB_MAIN_PORT_53_UDP_PROTO"))
print(env.get("DB_MAIN_NAME"), env.get("DB_MAIN_ENV_SECRET"), "DB_MAIN_ENV_PATH" in env)
k.reload()
print(k.attrs["HostConfig"]["Links"])
api.remove_container("lnk-client/db-main", link=True)
k.reload()
print(k.attrs["HostConfig"]["Links"])
print(status_of(c.containers.create, "busybox:1.35", ["true"], links={"nosuch": "x"}))
print(status_of(c.containers.create, "busybox:1.35", ["true"], links={"lnk-target": "x"}, network_mode="host")[0])
api.stop(t, timeout=0)
s = c.containers.create("busybox:1.35", ["true"], links={"lnk-target": "x"}, name="lnk-stopped")
print(status_of(s.start))
s.remove(); k.remove(); api.remove_container(t)
"##);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "True", "{out}");
    assert_eq!(lines[1], "True True True udp", "{out}");
    assert_eq!(lines[2], "/lnk-client/db-main s3 False", "{out}");
    assert_eq!(lines[3], "['/lnk-target:/lnk-client/db-main']", "{out}");
    assert_eq!(lines[4], "None", "{out}");
    assert_eq!(
        lines[5], "(404, 'could not get container for nosuch: No such container: nosuch')",
        "{out}"
    );
    assert_eq!(lines[6], "400", "{out}");
    assert!(
        lines[7].contains("Cannot link to a non running container: /lnk-target AS /lnk-stopped/x"),
        "{out}"
    );
}

/// Network create as dockerd: names with `.`, `-`, `_`; a duplicate name is refused (409,
/// `CheckDuplicate` or not); `Internal` networks have no route out; labels that are not
/// strings are refused (400, invalid JSON).
#[test]
fn network_create_names_duplicates_internal_and_label_types() {
    let out = py(r##"
n = c.networks.create("my.net-1_x", labels={"a": "b"})
print(n.name, n.attrs["Labels"])
print(status_of(c.networks.create, "my.net-1_x", check_duplicate=True))
print(status_of(c.networks.create, "my.net-1_x")[0])
i = c.networks.create("compat-internal", internal=True)
print(i.attrs["Internal"])
out = c.containers.run("busybox:1.35", ["sh", "-c", "ip route | grep -c default || true"], network="compat-internal", remove=True)
print(out.decode().strip())
r = api.post(api._url("/networks/create"), data=json.dumps({"Name": "badlabels", "Labels": {"a": 1}}),
             headers={"Content-Type": "application/json"})
print(r.status_code, r.json()["message"].startswith("invalid JSON"))
print(status_of(c.networks.create, "bridge"))
n.remove(); i.remove()
"##);
    assert_eq!(
        out,
        "my.net-1_x {'a': 'b'}\n(409, 'network with name my.net-1_x already exists')\n409\nTrue\n0\n400 True\n(403, 'operation is not permitted on predefined bridge network ')\n",
        "{out}"
    );
}

/// Inspect echoes the attach flags the client created the container with (`docker run -d`
/// sends false, `docker create` true for stdout/stderr), and `ExecIDs` lists the execs that
/// have not exited (null when there are none), as dockerd does.
#[test]
fn attach_flags_and_exec_ids_as_created() {
    let out = py(r##"
d = api.create_container("busybox:1.35", ["sleep", "60"], name="att-d", detach=True)
a = api.create_container("busybox:1.35", ["sleep", "60"], name="att-a", detach=False, stdin_open=True)
for cid in (d["Id"], a["Id"]):
    cfg = api.inspect_container(cid)["Config"]
    print(cfg["AttachStdin"], cfg["AttachStdout"], cfg["AttachStderr"])
api.start(d["Id"])
print(api.inspect_container(d["Id"])["ExecIDs"])
e = api.exec_create(d["Id"], ["sleep", "30"])
print(api.inspect_container(d["Id"])["ExecIDs"] == [e["Id"]])
api.exec_start(e["Id"], detach=True)
q = api.exec_create(d["Id"], ["true"])
api.exec_start(q["Id"])
ids = api.inspect_container(d["Id"])["ExecIDs"]
print(e["Id"] in ids, q["Id"] in ids)
api.remove_container(d["Id"], force=True); api.remove_container(a["Id"], force=True)
"##);
    assert_eq!(
        out, "False False False\nTrue True True\nNone\nTrue\nTrue False\n",
        "{out}"
    );
}

/// docker-py's `create_host_config` block I/O, cpuset and cgroup parent arguments reach
/// inspect's `HostConfig` (the container is not started: no cgroup is made).
#[test]
fn blkio_cpuset_and_cgroup_parent_through_docker_py() {
    let out = py(r##"
hc = api.create_host_config(device_read_bps=[{"Path": "/dev/null", "Rate": 1048576}],
                            device_write_iops=[{"Path": "/dev/null", "Rate": 10}],
                            cpuset_mems="0", cgroup_parent="py-parent",
                            cpu_rt_period=900000, cpu_rt_runtime=90000)
cid = api.create_container("busybox:1.35", "true", host_config=hc, name="py-hostcfg")["Id"]
h = api.inspect_container(cid)["HostConfig"]
print(json.dumps([h["BlkioDeviceReadBps"], h["BlkioDeviceWriteIOps"], h["CpusetMems"],
                  h["CgroupParent"], h["CpuRealtimePeriod"], h["CpuRealtimeRuntime"]]))
api.remove_container(cid)
print(status_of(api.create_container, "busybox:1.35", "true",
                host_config=api.create_host_config(cpuset_mems="7")))
"##);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        r#"[[{"Path": "/dev/null", "Rate": 1048576}], [{"Path": "/dev/null", "Rate": 10}], "0", "py-parent", 900000, 90000]"#
    );
    assert!(
        lines[1].contains("Requested memory nodes are not available - requested 7"),
        "{out}"
    );
}
