//! `barge compose` projects written into temp dirs, for the compose e2e tests.

use std::path::PathBuf;
use std::process::Output;

use super::{stderr, stdout, tail, Daemon};

/// A project written into a temp dir; `down -v --remove-orphans` on drop, even on failure.
pub struct Proj {
    pub d: &'static Daemon,
    pub dir: PathBuf,
    pub name: String,
}

impl Proj {
    pub fn new(d: &'static Daemon, name: &str, yaml: &str) -> Proj {
        let dir = std::env::temp_dir().join(format!("barge-compose-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let p = Proj {
            d,
            dir,
            name: name.to_string(),
        };
        p.write(yaml);
        p
    }

    pub fn file(&self) -> String {
        self.dir.join("compose.yaml").display().to_string()
    }

    pub fn write(&self, yaml: &str) {
        std::fs::write(self.file(), yaml).unwrap();
    }

    pub fn compose(&self, args: &[&str]) -> Output {
        let file = self.file();
        let mut all = vec!["compose", "-f", &file, "-p", &self.name];
        all.extend_from_slice(args);
        self.d.barge(&all)
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.compose(args);
        assert!(
            out.status.success(),
            "compose {args:?} failed ({:?}):\nstdout: {}\nstderr: {}\ndaemon log tail:\n{}",
            out.status.code(),
            stdout(&out),
            stderr(&out),
            tail(&self.d.log(), 30)
        );
        stdout(&out)
    }

    pub fn id(&self, container: &str) -> String {
        self.d.inspect(container, "{{.Id}}")
    }
}

impl Drop for Proj {
    fn drop(&mut self) {
        let _ = self.compose(&["down", "-v", "--remove-orphans", "-t", "1"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
