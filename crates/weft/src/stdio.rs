//! Where `println!`, `print!` and `eprintln!` write in this binary (`main.rs` shadows the
//! standard macros with these): the same text, but a closed pipe is not a panic.
//!
//! `weft runs list | head -1` closes stdout after one line. The standard macros panic on the
//! next write ("failed printing to stdout: Broken pipe", exit 101); here the process ends
//! quietly with 0, as a filter's reader asked for no more. A closed stderr (progress piped into
//! a reader that went away) drops the line and carries on, so a run is never stopped by its
//! progress view. Any other write error on stdout is reported and ends the process with 1.

use std::fmt::Arguments;
use std::io::{ErrorKind, Write as _};

/// Writes to stdout; on a broken pipe ends the process quietly.
pub fn out(args: Arguments<'_>, newline: bool) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(args)
        .and_then(|()| {
            if newline {
                stdout.write_all(b"\n")
            } else {
                Ok(())
            }
        })
        // A line at a time, as the standard macros do through their line buffer.
        .and_then(|()| if newline { stdout.flush() } else { Ok(()) });
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            err(format_args!("error: cannot write to stdout: {e}"));
            std::process::exit(1);
        }
    }
}

/// Writes a line to stderr; a closed stderr drops it.
pub fn err(args: Arguments<'_>) {
    let mut stderr = std::io::stderr().lock();
    let _ = stderr
        .write_fmt(args)
        .and_then(|()| stderr.write_all(b"\n"));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_macros_format_like_the_standard_ones() {
        // Compiles only while the shadowing macros accept the standard forms.
        println!();
        println!("{} {x}", 1, x = 2);
        print!("{}", "");
        eprintln!("{:>3}", 1);
    }
}
