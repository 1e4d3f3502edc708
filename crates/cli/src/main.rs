//! The `nicslice` binary: parse the command line, call the engine, print.
//! No logic of its own; one small file per command under `commands/`.

mod args;
mod commands;
mod output;

use clap::Parser;

fn main() {
    // Run as nicslice-macvlan, nicslice-ipvlan or nicslice-ipam: a CNI plugin,
    // which speaks JSON on stdin/stdout and takes no command line.
    if let Some(plugin) =
        std::env::args_os().next().and_then(|a| nicslice_cni::Plugin::from_argv0(&a))
    {
        std::process::exit(nicslice_cni::main(plugin));
    }
    let cli = args::Cli::parse();
    init_logging(cli.verbose);
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
}

fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "nicslice=debug,nicslice_engine=debug,nicslice_kernel=debug,nicslice_store=debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NICSLICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
