//! Debian's `etcd-server` for end-to-end tests: a cluster of `n` members on loopback ports,
//! killed and removed on drop (e2e_ha, e2e_multinode).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::server::{curl, free_port, unique_dir};
use super::stdout;

/// One member: its client and peer ports on loopback.
pub struct Member {
    pub client: u16,
    pub peer: u16,
    child: Option<Child>,
}

/// An etcd cluster of `n` members on loopback ports, its data under a directory of its own;
/// every member killed and the directory removed on drop.
pub struct Etcd {
    pub dir: PathBuf,
    pub members: Vec<Member>,
}

impl Etcd {
    pub fn start(n: usize) -> Etcd {
        let dir = unique_dir();
        let members = (0..n)
            .map(|_| Member {
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut e = Etcd { dir, members };
        for i in 0..n {
            e.spawn(i);
        }
        for i in 0..n {
            e.wait(i);
        }
        e
    }

    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("m{i}=http://127.0.0.1:{}", m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn spawn(&mut self, i: usize) {
        let (client, peer) = (self.members[i].client, self.members[i].peer);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("m{i}.log")))
            .unwrap();
        let child = Command::new("/usr/bin/etcd")
            .args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(self.dir.join(format!("m{i}")))
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{client}"),
            ])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{peer}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer}"),
            ])
            .args(["--initial-cluster", &self.initial_cluster()])
            .args(["--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", &self.dir.display().to_string()])
            .args(["--logger", "zap", "--log-level", "error"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting /usr/bin/etcd (Debian's etcd-server)");
        self.members[i].child = Some(child);
    }

    /// Waits until member `i` answers a client request (its `/health` through curl).
    pub fn wait(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}/health", self.members[i].client);
        while Instant::now() < deadline {
            let out = curl(&["-s", &url]);
            if stdout(&out).contains("\"health\":\"true\"") {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "etcd member m{i} not healthy in 30s:\n{}",
            std::fs::read_to_string(self.dir.join(format!("m{i}.log"))).unwrap_or_default()
        );
    }

    pub fn endpoints(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill9(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
