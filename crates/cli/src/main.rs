//! The `nicslice` binary: parse the command line, call the engine, print.
//! No logic of its own; one small file per command under `commands/`.
//!
//! The entry point is C's `main`, not Rust's (`no_main`): run as a CNI
//! plugin this binary is one process per call, and Rust's runtime set-up
//! finds the main thread's stack by reading and parsing /proc/self/maps
//! (glibc's `pthread_getattr_np`: a dozen system calls and 40,000
//! instructions, more than a tenth of what an ADD adds to the kernel's own
//! work). What that set-up does that matters here is done below: standard
//! descriptors that are closed are opened on /dev/null, and SIGPIPE is
//! ignored, so a closed pipe is a write error as in any Rust program. What
//! is given up: a stack overflow ends in a plain SIGSEGV instead of a
//! message saying so, and the main thread has no name in panic messages.

// The unit tests of this crate have the test harness's own main.
#![cfg_attr(not(test), no_main)]

mod args;
mod commands;
mod hot_parse;
mod output;

#[cfg(not(test))]
#[unsafe(no_mangle)]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    run()
}

#[cfg_attr(test, allow(dead_code))]
fn run() -> libc::c_int {
    sanitize_standard_fds();
    // SAFETY: setting a signal's disposition to SIG_IGN, before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // Run as nicslice-macvlan, nicslice-ipvlan or nicslice-ipam: a CNI plugin,
    // which speaks JSON on stdin/stdout and takes no command line.
    if let Some(plugin) =
        std::env::args_os().next().and_then(|a| nicslice_cni::Plugin::from_argv0(&a))
    {
        let code = nicslice_cni::main(plugin);
        // The answer is written unbuffered: there is nothing for exit's
        // handlers to flush, only their code to fault in.
        // SAFETY: ends the process; no other thread is running.
        unsafe { libc::_exit(code) };
    }
    let cli = hot_parse::parse();
    init_logging(cli.global.verbose);
    if let Err(err) = commands::run(cli) {
        // One line: the error and its causes, outermost first.
        let mut line = err.to_string();
        for cause in err.chain().skip(1) {
            let cause = cause.to_string();
            if !line.contains(&cause) {
                line.push_str(": ");
                line.push_str(&cause);
            }
        }
        eprintln!("nicslice: {line}");
        std::process::exit(1);
    }
    0
}

/// Opens /dev/null on any of descriptors 0, 1 and 2 that is closed, as
/// Rust's runtime would: otherwise the first file opened (the lease
/// database) would take the number and receive what is printed.
fn sanitize_standard_fds() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd { fd, events: 0, revents: 0 });
    // SAFETY: poll reads and writes only the three entries of `fds`.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    for fd in fds.iter().filter(|p| p.revents & libc::POLLNVAL != 0) {
        // SAFETY: a NUL-terminated path; open returns the lowest free
        // number, which is this closed one (the lower ones are open).
        let opened = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        if opened != fd.fd {
            // Cannot keep the promise: stop rather than write into another file.
            std::process::abort();
        }
    }
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "nicslice=debug,nicslice_engine=debug,nicslice_kernel=debug,nicslice_store=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NICSLICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    // Colour only for a person at a terminal: a pipe or a log file gets
    // plain text, not escape codes.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}
