//! Child processes that tools start (the `command` tool, skills, stdio MCP servers): every
//! one is built here, directly or inside a [`Sandbox`], and dies with weft.

use crate::sandbox::{Sandbox, View};

/// The command that runs `program args`: inside `sandbox` when there is one (seeing only
/// what `view` adds to the sandbox), else directly in `view.cwd`. Its environment is empty
/// either way; the caller adds what the child may see.
pub(crate) fn command(
    program: &str,
    args: &[String],
    sandbox: Option<&Sandbox>,
    view: &View,
) -> tokio::process::Command {
    let mut command = match sandbox {
        Some(sandbox) => sandbox.command(program, args, view),
        None => {
            let mut command = tokio::process::Command::new(program);
            command.args(args).env_clear();
            if let Some(cwd) = &view.cwd {
                command.current_dir(cwd);
            }
            command
        }
    };
    die_with_parent(&mut command);
    command
}

/// Makes the kernel kill the child when weft dies, even by SIGKILL when no destructor runs:
/// a tool process must not outlive the worker that owns its lease.
pub(crate) fn die_with_parent(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    // SAFETY: the closure runs between fork and exec and makes one async-signal-safe syscall
    // (prctl), allocating nothing. This is the workspace's one `unsafe` block.
    #[allow(unsafe_code)]
    unsafe {
        command.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}
