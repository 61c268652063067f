//! `docker exec`: exec instances registered in a running container, started under their own
//! monitor (`<exec-root>/e/<id>`), inspected, waited for, resized and forgotten.
//!
//! **Invariants:** an exec belongs to one container and is dropped with it; a started exec
//! always ends with an exit code (also when its start failed), so `exec_inspect` never
//! reports a finished exec without one.

use std::time::Instant;

use crate::monitor::MonitorConfig;
use crate::*;

use super::{io_err, random_hex, write_atomic, Containers, Watch};

impl Containers {
    /// Registers an exec instance in a running container.
    pub fn exec_create(&self, container: &str, opts: ExecOptions) -> Result<Exec, ContainerError> {
        let c = self.get(container)?;
        if c.state.status == Status::Paused {
            return Err(ContainerError::Paused(c.id));
        }
        if c.state.status != Status::Running {
            return Err(ContainerError::NotRunning(c.id));
        }
        if opts.cmd.is_empty() {
            return Err(ContainerError::InvalidOption {
                field: "cmd".into(),
                reason: "No exec command specified".into(),
            });
        }
        let exec = Exec {
            id: random_hex(32),
            container_id: c.id,
            options: opts,
            running: false,
            exit_code: None,
            pid: 0,
        };
        self.lock().execs.insert(exec.id.clone(), exec.clone());
        Ok(exec)
    }

    /// Starts an exec instance; like [`Containers::start`] for attach. With `detach` nothing attaches.
    pub fn exec_start(
        &self,
        exec_id: &str,
        detach: bool,
        expected_attaches: usize,
        on_ready: &mut dyn FnMut(&AttachPoint),
    ) -> Result<(), ContainerError> {
        let result = self.exec_start_inner(exec_id, detach, expected_attaches, on_ready);
        if result.is_err() {
            // Whatever failed, a started exec ends with an exit code, so `exec_inspect` never
            // reports a finished exec without one.
            let mut inner = self.lock();
            if let Some(e) = inner.execs.get_mut(exec_id) {
                if e.pid == -1 && e.exit_code.is_none() {
                    e.running = false;
                    // dockerd's `ContainerExecStart` sets 126 for every exec that fails to
                    // start (its deferred handler overrides the 127 of "not found").
                    e.exit_code = Some(126);
                }
            }
            drop(inner);
            self.exec_changed(exec_id);
        }
        result
    }

    fn exec_start_inner(
        &self,
        exec_id: &str,
        detach: bool,
        expected_attaches: usize,
        on_ready: &mut dyn FnMut(&AttachPoint),
    ) -> Result<(), ContainerError> {
        let exec = {
            let mut inner = self.lock();
            let e = inner
                .execs
                .get_mut(exec_id)
                .ok_or_else(|| ContainerError::ExecNotFound(exec_id.to_string()))?;
            if e.running || e.exit_code.is_some() || e.pid != 0 {
                return Err(ContainerError::InvalidOption {
                    field: "exec".into(),
                    reason: format!("exec {exec_id} has already been started"),
                });
            }
            e.pid = -1;
            e.clone()
        };
        let c = self.get(&exec.container_id)?;
        if c.state.status != Status::Running {
            return Err(ContainerError::NotRunning(c.id));
        }
        let o = &exec.options;
        let rootfs = self.container_dir(&c.id).join("rootfs");
        let user_str = o
            .user
            .clone()
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| c.config.user.clone());
        let user = spec::resolve_user(&rootfs, &user_str)
            .and_then(|mut u| {
                spec::add_groups(&rootfs, &mut u, &c.options.host.group_add)?;
                Ok(u)
            })
            .map_err(|message| ContainerError::StartFailed { message })?;
        let mut env = vec![format!("HOSTNAME={}", c.config.hostname)];
        if o.tty {
            env.push("TERM=xterm".into());
        }
        for e in c.config.env.iter().chain(o.env.iter()) {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        if !env.iter().any(|e| e.starts_with("HOME=")) {
            env.push(format!("HOME={}", user.home));
        }
        let mut host = c.options.host.clone();
        host.privileged = host.privileged || o.privileged;
        let caps = spec::capabilities(&host)?;
        let cwd = o
            .working_dir
            .clone()
            .filter(|w| !w.is_empty())
            .unwrap_or_else(|| c.config.working_dir.clone());
        let process = spec::exec_process(
            o.cmd.clone(),
            env,
            cwd,
            &user,
            o.tty,
            &caps,
            spec::security_no_new_privileges(&host.security_opt),
        );
        let dir = self.exec_dir(&exec.id);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("create {}", dir.display())))?;
        write_atomic(
            &dir.join("process.json"),
            &serde_json::to_vec(&process).expect("process serializes"),
        )?;
        let mcfg = MonitorConfig {
            id: c.id.clone(),
            exec_id: Some(exec.id.clone()),
            runtime: self.runtime_path(&c.runtime)?,
            runtime_args: self.runtime_args(&c.runtime),
            runtime_root: self.runtime_root(&c.runtime),
            bundle: self.container_dir(&c.id),
            process_json: Some(dir.join("process.json")),
            state_dir: dir.clone(),
            attach_socket: dir.join("attach.sock"),
            control_socket: dir.join("control.sock"),
            log: None,
            tty: o.tty,
            open_stdin: o.attach_stdin && !detach,
            stdin_once: true,
            expected_attaches: if detach { 0 } else { expected_attaches },
            memory_cgroup: None,
            cgroups_path: None,
            loopback_up: false,
            init: false,
            in_process: false,
            start_gate: false,
            console_size: o.console_size.filter(|(h, w)| *h > 0 && *w > 0),
        };
        match self.run_monitor(&mcfg, &dir.join("monitor.json"), on_ready, None) {
            Ok((child, pid)) => {
                if let Some(e) = self.lock().execs.get_mut(&exec.id) {
                    e.running = true;
                    e.pid = pid;
                }
                self.spawn_watcher(c.id.clone(), Some(exec.id.clone()), Watch::Child(child));
                Ok(())
            }
            Err((child, message)) => {
                if let Some(mut ch) = child {
                    let _ = ch.wait();
                }
                if let Some(e) = self.lock().execs.get_mut(&exec.id) {
                    e.running = false;
                    // dockerd's `ContainerExecStart`: 126 for any exec that fails to start.
                    e.exit_code = Some(126);
                }
                let _ = std::fs::remove_dir_all(&dir);
                self.exec_changed(&exec.id);
                Err(ContainerError::StartFailed { message })
            }
        }
    }

    /// Takes an exec's exit from its `exit.json` if the monitor has written it. The
    /// monitor writes it before it closes the attach streams, and a client usually asks
    /// (inspect, exec inspect) right after its stream ended: do not wait for the watcher.
    /// A quick exec can end before its start recorded it as running, so any exec without an
    /// exit code is checked.
    fn refresh_exit(&self, e: &mut Exec) {
        if e.exit_code.is_none() {
            if let Some(rec) = Self::read_exit(&self.exec_dir(&e.id)) {
                e.running = false;
                e.exit_code = Some(rec.exit_code);
            }
        }
    }

    /// The container's exec instances that have not exited (created or running): inspect's
    /// `ExecIDs`, as dockerd drops an exec from its container when it exits.
    pub fn exec_ids(&self, container_id: &str) -> Vec<String> {
        let mut inner = self.lock();
        let mut ids: Vec<String> = inner
            .execs
            .values_mut()
            .filter(|e| e.container_id == container_id)
            .filter_map(|e| {
                self.refresh_exit(e);
                e.exit_code.is_none().then(|| e.id.clone())
            })
            .collect();
        ids.sort();
        ids
    }

    /// Current state of an exec instance.
    pub fn exec_inspect(&self, exec_id: &str) -> Result<Exec, ContainerError> {
        let mut inner = self.lock();
        let e = inner
            .execs
            .get_mut(exec_id)
            .ok_or_else(|| ContainerError::ExecNotFound(exec_id.to_string()))?;
        self.refresh_exit(e);
        let mut e = e.clone();
        if e.pid < 0 {
            // Started but not running yet (or failing): report it as running until its exit
            // code is known, so clients polling for the exit code do not read a missing one.
            e.pid = 0;
            e.running = e.exit_code.is_none();
        }
        Ok(e)
    }

    /// Like [`Containers::exec_wait`] with a deadline: true if the exec exited by then.
    pub(crate) fn exec_wait_until(&self, exec_id: &str, deadline: Instant) -> bool {
        let mut inner = self.lock();
        loop {
            match inner.execs.get(exec_id) {
                None => return true,
                Some(e) if e.exit_code.is_some() => return true,
                Some(_) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            inner = self
                .cond
                .wait_timeout(inner, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Drops an exec instance's record (health probes do not pile up).
    pub(crate) fn exec_forget(&self, exec_id: &str) {
        self.lock().execs.remove(exec_id);
    }

    /// Resizes an exec's TTY.
    pub fn exec_resize(
        &self,
        exec_id: &str,
        height: u16,
        width: u16,
    ) -> Result<(), ContainerError> {
        let e = self.exec_inspect(exec_id)?;
        if !e.running {
            return Err(ContainerError::NotRunning(e.container_id));
        }
        Self::control(
            &self.exec_dir(exec_id).join("control.sock"),
            &format!("resize {height} {width}\n"),
        )
    }
}
