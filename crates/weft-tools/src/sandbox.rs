//! Confinement of the processes tools start, with Debian's `bubblewrap` (`bwrap`).
//!
//! A confined child sees a read-only system (`/usr` and the parts of `/etc` programs need:
//! never `/root`, `/home`, the server's folder or its store), a private `/tmp` (a size-capped
//! tmpfs, also its home and, unless the step says otherwise, its working folder), a `/proc` of
//! its own PID namespace only (so no other process's `environ`), no network unless allowed
//! (`--unshare-net`), no capabilities, and the folders it is given: the skill's folder or the
//! operator's template folder read-only, the operator's `writable` paths read-write. Its
//! environment is only what the tool sets (the step's `env` and the task variables): bwrap
//! itself starts with an empty one. Inside, `prlimit` (util-linux, essential on Debian) sets
//! the resource limits before the program starts: CPU seconds, address space, processes
//! (counted in the sandbox's own user namespace), open files and file size.
//!
//! Why bwrap: it is a small, audited setuid-free tool that needs only unprivileged user
//! namespaces, costs a few milliseconds per spawn, and keeps weft free of the `unsafe` a
//! hand-made namespace setup would need. A machine where it does not work refuses process
//! tools for tenants ([`Sandbox::probe`] says why); nothing runs unconfined in its place.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::{Deserialize, Serialize};

/// The parts of `/etc` a confined program may read: name resolution, users, certificates,
/// time zones, the dynamic linker's cache. Never `/etc/shadow`, `/etc/ssl/private` or
/// whatever else the host keeps there.
const ETC: &[&str] = &[
    "alternatives",
    "ca-certificates",
    "ca-certificates.conf",
    "fonts",
    "gai.conf",
    "group",
    "host.conf",
    "hosts",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "localtime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "passwd",
    "protocols",
    "resolv.conf",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "timezone",
];

/// The system folders bound read-only, and the merged-`/usr` links beside them.
const SYSTEM: &[&str] = &["/usr"];
const LINKS: &[(&str, &str)] = &[
    ("usr/bin", "/bin"),
    ("usr/sbin", "/sbin"),
    ("usr/lib", "/lib"),
    ("usr/lib64", "/lib64"),
];

/// The scratch folder inside the sandbox: a private tmpfs.
pub const SCRATCH: &str = "/tmp";

/// `[sandbox]` (the operator's own templates, when present) or `[tenant_sandbox]` (every
/// tenant's, always) in `weft.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SandboxConfig {
    /// Host paths the confined processes may write (bound read-write at the same path).
    pub writable: Vec<PathBuf>,
    /// Whether they may use the network (the host's); default: no network at all.
    pub network: bool,
    /// CPU time per process, in seconds.
    pub cpu_seconds: u64,
    /// Address space per process, in MiB.
    pub memory_mb: u64,
    /// Processes (and threads) at once inside one sandbox.
    pub processes: u64,
    /// Open files per process.
    pub open_files: u64,
    /// Largest file a process may write, in MiB.
    pub file_size_mb: u64,
    /// Size of the private `/tmp`, in MiB.
    pub scratch_mb: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            writable: Vec::new(),
            network: false,
            cpu_seconds: 60,
            memory_mb: 2048,
            processes: 64,
            open_files: 256,
            file_size_mb: 64,
            scratch_mb: 64,
        }
    }
}

/// A working confinement: where bwrap and prlimit are, and what the sandbox allows.
#[derive(Debug, Clone)]
pub struct Sandbox {
    bwrap: PathBuf,
    prlimit: PathBuf,
    config: SandboxConfig,
}

/// Where a confined child works and what else it sees.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// A host folder made visible read-only at its own path (a skill's, the operator's
    /// template folder).
    pub visible: Option<PathBuf>,
    /// The working folder, as the child sees it; default the scratch folder.
    pub cwd: Option<PathBuf>,
}

impl Sandbox {
    /// Finds bwrap and prlimit and checks that a confined process starts here (user
    /// namespaces may be disabled); `Err` says what is missing.
    pub fn probe(config: SandboxConfig) -> Result<Sandbox, String> {
        let bwrap = find_program("bwrap").ok_or(
            "`bwrap` (Debian package bubblewrap) is not installed: `apt-get install bubblewrap`",
        )?;
        let prlimit = find_program("prlimit")
            .ok_or("`prlimit` (Debian package util-linux) is not installed")?;
        for path in &config.writable {
            if !path.is_absolute() {
                return Err(format!(
                    "sandbox: writable path {} must be absolute",
                    path.display()
                ));
            }
        }
        let sandbox = Sandbox {
            bwrap,
            prlimit,
            config,
        };
        let mut probe = std::process::Command::new(&sandbox.bwrap);
        probe
            .args(sandbox.args(&View::default()))
            .arg("true")
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match probe.output() {
            Ok(out) if out.status.success() => Ok(sandbox),
            Ok(out) => Err(format!(
                "`bwrap` cannot start a confined process here (are unprivileged user \
                 namespaces disabled?): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
            Err(e) => Err(format!("cannot run `bwrap`: {e}")),
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// One line for `weft serve`'s start: what a confined process may do.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let mut text = format!(
            "read-only system, private {SCRATCH} ({} MiB), {}, limits {} s CPU, {} MiB memory, \
             {} processes, {} files, {} MiB per file",
            c.scratch_mb,
            if c.network { "network" } else { "no network" },
            c.cpu_seconds,
            c.memory_mb,
            c.processes,
            c.open_files,
            c.file_size_mb
        );
        if !c.writable.is_empty() {
            let paths: Vec<String> = c.writable.iter().map(|p| p.display().to_string()).collect();
            text.push_str(&format!(", writable {}", paths.join(" ")));
        }
        text
    }

    /// The command that runs `program args` inside the sandbox: bwrap, then prlimit, then
    /// the program. Its environment is empty: the caller adds only what the child may see.
    pub(crate) fn command(
        &self,
        program: &str,
        args: &[String],
        view: &View,
    ) -> tokio::process::Command {
        let c = &self.config;
        let mib = |n: u64| n.saturating_mul(1024 * 1024);
        let mut command = tokio::process::Command::new(&self.bwrap);
        command
            .args(self.args(view))
            .arg(&self.prlimit)
            .arg(format!("--cpu={}", c.cpu_seconds))
            .arg(format!("--as={}", mib(c.memory_mb)))
            .arg(format!("--nproc={}", c.processes))
            .arg(format!("--nofile={}", c.open_files))
            .arg(format!("--fsize={}", mib(c.file_size_mb)))
            .arg("--")
            .arg(program)
            .args(args)
            .env_clear()
            // Nothing of the server's folder, even as bwrap's own working directory.
            .current_dir("/");
        command
    }

    /// bwrap's arguments up to the program (ending in `--`).
    fn args(&self, view: &View) -> Vec<String> {
        let mut args: Vec<String> = [
            "--die-with-parent",
            "--new-session",
            "--unshare-all",
            "--cap-drop",
            "ALL",
        ]
        .map(String::from)
        .to_vec();
        if self.config.network {
            args.push("--share-net".into());
        }
        for dir in SYSTEM {
            if Path::new(dir).is_dir() {
                args.extend(["--ro-bind".into(), dir.to_string(), dir.to_string()]);
            }
        }
        for (target, link) in LINKS {
            if Path::new(link).is_symlink() {
                args.extend(["--symlink".into(), target.to_string(), link.to_string()]);
            } else if Path::new(link).is_dir() {
                args.extend(["--ro-bind".into(), link.to_string(), link.to_string()]);
            }
        }
        for name in ETC {
            let path = Path::new("/etc").join(name);
            if path.exists() {
                let path = path.display().to_string();
                args.extend(["--ro-bind".into(), path.clone(), path]);
            }
        }
        args.extend(
            ["--proc", "/proc", "--dev", "/dev", "--size"]
                .map(String::from)
                .to_vec(),
        );
        args.push(
            self.config
                .scratch_mb
                .saturating_mul(1024 * 1024)
                .to_string(),
        );
        args.extend(["--tmpfs".into(), SCRATCH.into()]);
        if let Some(dir) = &view.visible {
            let dir = dir.display().to_string();
            args.extend(["--ro-bind".into(), dir.clone(), dir]);
        }
        for path in &self.config.writable {
            let path = path.display().to_string();
            args.extend(["--bind".into(), path.clone(), path]);
        }
        let cwd = view
            .cwd
            .clone()
            .unwrap_or_else(|| PathBuf::from(SCRATCH))
            .display()
            .to_string();
        args.extend(["--chdir".into(), cwd, "--".into()]);
        args
    }
}

/// `name` on the standard system path (never the server's own `PATH`, which a user may
/// have pointed anywhere).
fn find_program(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}
