//! Child processes that tools start (the `command` tool, skills, stdio MCP servers).

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
