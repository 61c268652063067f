//! The fresh-machine guard: everything the build, the demo and the tests need must come from a
//! Debian package that `scripts/install-deps.sh` installs (the lines of the `packages` list of `scripts/install-deps.sh`,
//! with the packages apt pulls in for them), or from one Debian marks `required`. A library or a
//! tool that a development machine has only because someone installed it by hand fails here, in
//! CI, instead of at a new user's link step (`unable to find library -lseccomp`).
//!
//! Checked: every shared library `barge` loads (`ldd`: its `DT_NEEDED` entries and theirs), the
//! link-time `lib<name>.so` of each `DT_NEEDED` entry, and every program the tests, the engine
//! and the README's scripts run.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;

const BARGE: &str = env!("CARGO_BIN_EXE_barge");

/// Programs that are on every development machine and CI machine of this project without a
/// Debian package: the stock docker CLI (28) the tests drive, in `/usr/local/bin`, and the
/// preinstalled kubectl 1.32 (Google's `kubectl` package; Debian 12 has none) that the API
/// server's tests drive. `install-deps.sh` installs Debian's `docker.io` where no `docker` is
/// found.
const MACHINE_PROVIDED: &[(&str, &str)] = &[
    ("docker", "/usr/local/bin/docker"),
    ("kubectl", "/usr/bin/kubectl"),
];

/// Programs run without a literal `Command::new("…")` in Rust: through a crate (`nft` by
/// `nftables`), a path constant (`/usr/bin/python3`), the harness's `docker_cli()`, the default
/// runtime lookup (`runc`), by the README's scripts, or by kubectl (`EDITOR` scripts).
const INDIRECT_TOOLS: &[&str] = &[
    "nft",
    "/usr/bin/python3",
    "docker",
    "runc",
    "ip",
    "curl",
    "gcc",
    "pkg-config",
    "apt-get",
    "dpkg-query",
    "ldd",
    "mktemp",
    "umount",
    // etcd-client's build script (crates/datastore) runs it.
    "protoc",
    // barge_datastore::testing's snapshots (its ETCDCTL constant), docs/operations.md
    "/usr/bin/etcdctl",
    // crates/ingress/examples/bench.rs, the Ingress proxy's reference
    "/usr/sbin/nginx",
    // kubectl edit's editor script in crates/apiserver/tests/kubectl.rs
    "sh",
    "sed",
    // scripts/demo-cluster.sh (run by e2e_model_serving)
    "bash",
    "awk",
    "xargs",
    "grep",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The packages `install-deps.sh` installs: the first word of each line of its `packages=(…)`
/// list (between its `BEGIN packages` and `END packages` markers).
fn listed_packages() -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("scripts/install-deps.sh"))
        .expect("scripts/install-deps.sh");
    let list = text
        .split("# BEGIN packages")
        .nth(1)
        .and_then(|t| t.split("# END packages").next())
        .expect("install-deps.sh has a BEGIN/END packages list");
    // The marker line's own rest ("(read by …)") is not a package.
    list.lines()
        .skip(1)
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty() && !l.starts_with("packages=(") && *l != ")")
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect()
}

/// Installed packages that are acceptable sources: the listed ones and everything they depend
/// on (what apt installs with them), plus Debian's `required` and essential packages.
fn acceptable_packages() -> BTreeSet<String> {
    let out = Command::new("dpkg-query")
        .args([
            "-W",
            "-f=${Package}\t${Status}\t${Priority}\t${Essential}\t${Pre-Depends}, ${Depends}\n",
        ])
        .output()
        .expect("dpkg-query (this suite runs on Debian)");
    assert!(out.status.success());
    let mut deps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ok = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() < 5 || !f[1].ends_with(" installed") {
            continue;
        }
        let name = f[0].to_string();
        if f[2] == "required" || f[3] == "yes" {
            ok.insert(name.clone());
        }
        // "a (>= 1) | b, c:any" -> every alternative's name.
        let d = f[4]
            .split([',', '|'])
            .filter_map(|x| x.split_whitespace().next())
            .map(|x| x.split(':').next().unwrap().to_string())
            .collect();
        deps.insert(name, d);
    }
    let listed = listed_packages();
    for p in &listed {
        assert!(
            deps.contains_key(p),
            "the packages list of scripts/install-deps.sh lists {p}, which is not installed: run scripts/install-deps.sh"
        );
    }
    // Breadth-first through Depends/Pre-Depends; virtual names no installed package carries
    // are skipped.
    let mut queue: VecDeque<String> = listed.into_iter().collect();
    while let Some(p) = queue.pop_front() {
        ok.insert(p.clone());
        for d in deps.get(&p).cloned().unwrap_or_default() {
            if deps.contains_key(&d) && !ok.contains(&d) {
                queue.push_back(d);
            }
        }
    }
    ok
}

/// The package that installed `path`, trying the merged-/usr aliases Debian 12 registers
/// files under (`/bin` = `/usr/bin`, `/lib` = `/usr/lib`, `/sbin` = `/usr/sbin`).
fn owner(path: &Path) -> Option<String> {
    // The name itself first (a `libX.so` link belongs to the -dev package, its target to the
    // library's), with its directory made canonical (`gcc -print-file-name` answers with `..`).
    let mut candidates = vec![path.to_path_buf()];
    if let (Some(dir), Some(name)) = (path.parent(), path.file_name()) {
        if let Ok(d) = dir.canonicalize() {
            candidates.push(d.join(name));
        }
    }
    if let Ok(c) = path.canonicalize() {
        candidates.push(c);
    }
    for c in candidates.clone() {
        let s = c.to_string_lossy().to_string();
        if let Some(rest) = s.strip_prefix("/usr") {
            candidates.push(PathBuf::from(rest));
        } else {
            candidates.push(PathBuf::from(format!("/usr{s}")));
        }
    }
    for c in candidates {
        let out = Command::new("dpkg-query").arg("-S").arg(&c).output().ok()?;
        if out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            // "pkg:arch: /path" (or "a, b: /path" for shared directories); diversions
            // ("diversion by dash from: /bin/sh") come first.
            let line = text.lines().find(|l| !l.starts_with("diversion by "))?;
            let pkgs = line.rsplit_once(": ")?.0.to_string();
            return Some(pkgs.split(", ").next()?.split(':').next()?.to_string());
        }
    }
    None
}

/// `PATH` lookup, as a shell would do it.
fn which(tool: &str) -> Option<PathBuf> {
    if tool.starts_with('/') {
        return Path::new(tool).exists().then(|| PathBuf::from(tool));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    })
}

fn check_source(what: &str, path: &Path, ok: &BTreeSet<String>, problems: &mut Vec<String>) {
    match owner(path) {
        Some(pkg) if ok.contains(&pkg) => {}
        Some(pkg) => problems.push(format!(
            "{what} ({}) comes from package {pkg}, which the packages list of scripts/install-deps.sh does not list \
             (nor pull in)",
            path.display()
        )),
        None => problems.push(format!(
            "{what} ({}) belongs to no Debian package: install it from the packages list of scripts/install-deps.sh",
            path.display()
        )),
    }
}

#[test]
fn the_package_list_is_well_formed() {
    let listed = listed_packages();
    assert!(
        listed.contains("libseccomp-dev"),
        "the link needs -lseccomp"
    );
    for p in &listed {
        assert!(
            p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c)),
            "not a Debian package name: {p}"
        );
    }
}

#[test]
fn every_library_barge_links_comes_from_an_installed_package() {
    let ok = acceptable_packages();
    let out = Command::new("ldd").arg(BARGE).output().expect("ldd");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "ldd {BARGE}: {text}");
    let mut problems = Vec::new();
    let mut seen = 0;
    for line in text.lines() {
        // "libseccomp.so.2 => /lib/x86_64-linux-gnu/libseccomp.so.2 (0x…)" or
        // "/lib64/ld-linux-x86-64.so.2 (0x…)"; the vDSO has no file.
        let line = line.trim();
        if line.starts_with("linux-vdso") {
            continue;
        }
        if line.contains("not found") {
            problems.push(format!("barge needs {line}"));
            continue;
        }
        let path = match line.split_once(" => ") {
            Some((_, rest)) => rest.split(" (").next().unwrap_or(""),
            None => line.split(" (").next().unwrap_or(""),
        };
        if path.starts_with('/') {
            seen += 1;
            check_source(
                &format!("library {line}"),
                Path::new(path),
                &ok,
                &mut problems,
            );
        }
    }
    assert!(seen >= 2, "ldd listed no libraries: {text}");
    // Link time: each DT_NEEDED `libX.so.N` is linked as `-lX`, found as `libX.so`.
    for soname in needed(Path::new(BARGE)) {
        let Some(stem) = soname.split(".so").next().filter(|s| s.starts_with("lib")) else {
            continue;
        };
        if stem == "libc" || stem == "libm" || stem.starts_with("ld-linux") {
            // glibc's linker scripts (libc6-dev) and the dynamic loader: checked above.
            continue;
        }
        let dev = Command::new("gcc")
            .arg(format!("-print-file-name={stem}.so"))
            .output()
            .expect("gcc");
        let dev = String::from_utf8_lossy(&dev.stdout).trim().to_string();
        if !dev.starts_with('/') {
            problems.push(format!(
                "the link needs {stem}.so (for {soname}) and nothing provides it"
            ));
            continue;
        }
        check_source(
            &format!("link-time {stem}.so"),
            Path::new(&dev),
            &ok,
            &mut problems,
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// `DT_NEEDED` entries of an ELF file, as `ldd` resolves them but without the transitive ones.
fn needed(bin: &Path) -> Vec<String> {
    // `ldd` shows direct and transitive ones together; the dynamic loader's --list equivalent
    // with LD_TRACE_LOADED_OBJECTS is the same. Read the dynamic section instead.
    let data = std::fs::read(bin).expect("binary");
    let elf = Elf64::new(&data).expect("a 64-bit little-endian ELF");
    elf.needed()
}

/// Just enough of an ELF64 (little-endian) reader for the dynamic section's `DT_NEEDED`.
struct Elf64<'a> {
    d: &'a [u8],
}

impl<'a> Elf64<'a> {
    fn new(d: &'a [u8]) -> Option<Self> {
        (d.len() > 64 && &d[..4] == b"\x7fELF" && d[4] == 2 && d[5] == 1).then_some(Elf64 { d })
    }
    fn u16(&self, o: usize) -> usize {
        u16::from_le_bytes(self.d[o..o + 2].try_into().unwrap()) as usize
    }
    fn u32(&self, o: usize) -> usize {
        u32::from_le_bytes(self.d[o..o + 4].try_into().unwrap()) as usize
    }
    fn u64(&self, o: usize) -> usize {
        u64::from_le_bytes(self.d[o..o + 8].try_into().unwrap()) as usize
    }
    fn needed(&self) -> Vec<String> {
        let (shoff, shentsize, shnum) = (self.u64(0x28), self.u16(0x3a), self.u16(0x3c));
        let sections: Vec<(usize, usize, usize, usize)> = (0..shnum)
            .map(|i| {
                let s = shoff + i * shentsize;
                // (type, offset, size, link)
                (
                    self.u32(s + 4),
                    self.u64(s + 0x18),
                    self.u64(s + 0x20),
                    self.u32(s + 0x28),
                )
            })
            .collect();
        const SHT_DYNAMIC: usize = 6;
        const DT_NEEDED: usize = 1;
        let mut out = Vec::new();
        for &(ty, off, size, link) in &sections {
            if ty != SHT_DYNAMIC {
                continue;
            }
            let strtab = sections[link].1;
            for e in (off..off + size).step_by(16) {
                let (tag, val) = (self.u64(e), self.u64(e + 8));
                if tag == 0 {
                    break;
                }
                if tag == DT_NEEDED {
                    let s = &self.d[strtab + val..];
                    let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
                    out.push(String::from_utf8_lossy(&s[..end]).into_owned());
                }
            }
        }
        out
    }
}

/// Every `Command::new("tool")` literal in the workspace's Rust sources (engine and tests).
fn literal_tools() -> BTreeSet<String> {
    let mut tools = BTreeSet::new();
    let mut stack = vec![repo().join("crates")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs")
                && p.file_name() != Some("deps.rs".as_ref())
            {
                let text = std::fs::read_to_string(&p).unwrap_or_default();
                for part in text.split("Command::new(\"").skip(1) {
                    if let Some(name) = part.split('"').next() {
                        tools.insert(name.to_string());
                    }
                }
            }
        }
    }
    tools
}

#[test]
fn every_tool_the_tests_and_engine_run_comes_from_an_installed_package() {
    let ok = acceptable_packages();
    let mut tools = literal_tools();
    assert!(
        tools.contains("skopeo"),
        "the source scan found the tests' tools: {tools:?}"
    );
    tools.extend(INDIRECT_TOOLS.iter().map(|s| s.to_string()));
    let mut problems = Vec::new();
    for tool in &tools {
        let Some(path) = which(tool) else {
            problems.push(format!(
                "{tool}: not found on PATH; add its package to the packages list of scripts/install-deps.sh"
            ));
            continue;
        };
        if let Some((_, p)) = MACHINE_PROVIDED.iter().find(|(t, _)| t == tool) {
            if path == Path::new(p) {
                continue;
            }
        }
        check_source(tool, &path, &ok, &mut problems);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_tests_python_has_the_pinned_clients() {
    // The venv install-deps.sh makes: Debian's python3 (checked above as a tool) with the
    // versions scripts/python-requirements.txt pins of docker-py and the Kubernetes client.
    let python = repo().join("target/pyenv/bin/python3");
    let pins = std::fs::read_to_string(repo().join("scripts/python-requirements.txt"))
        .expect("scripts/python-requirements.txt");
    for (package, module) in [("docker", "docker"), ("kubernetes", "kubernetes")] {
        let want = pins
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{package}==")))
            .unwrap_or_else(|| panic!("{package} pinned with == in python-requirements.txt"));
        let out = Command::new(&python)
            .args([
                "-c",
                &format!("import {module}; print({module}.__version__)"),
            ])
            .output()
            .unwrap_or_else(|e| panic!("{}: {e} (run scripts/install-deps.sh)", python.display()));
        assert!(
            out.status.success(),
            "{package} missing in {}: {}",
            python.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            want,
            "{package}"
        );
    }
    // Its interpreter is Debian's.
    let base = std::fs::canonicalize(&python).unwrap();
    assert!(
        owner(&base).is_some(),
        "{} is not Debian's python3",
        base.display()
    );
}
