//! Parsing the command line of the busiest commands against a command tree
//! that holds only them.
//!
//! clap builds every subcommand's arguments (their names, help texts and
//! parsers) before it matches the one given: for nicslice's two dozen
//! commands about 0.3 ms and 90 page faults, a tenth of an `attach`, which a
//! container runtime or a script may run hundreds of times. `attach` and
//! `detach` (after global options, if any) are parsed against the global
//! options and themselves alone, into the same [`Cli`] the whole tree gives. Anything
//! else, and every case the reduced tree cannot answer as the whole one
//! would (help, version, a mistake, whose message names the whole
//! command), goes to the whole tree.

use std::ffi::OsString;

use clap::{Args, FromArgMatches, Parser};

use crate::args::{AttachArgs, Cli, DetachArgs, GlobalArgs};

/// The command line of this process, parsed (exits with clap's message and
/// status on a mistake or for help, as `Cli::parse` does).
pub fn parse() -> Cli {
    let args: Vec<OsString> = std::env::args_os().collect();
    hot(&args).unwrap_or_else(|| Cli::parse_from(args))
}

/// `args` parsed by the reduced tree, when the command is a hot one and the
/// reduced tree accepts it.
fn hot(args: &[OsString]) -> Option<Cli> {
    let sub = match command_name(args)? {
        "attach" => AttachArgs::augment_args(clap::Command::new("attach")),
        "detach" => DetachArgs::augment_args(clap::Command::new("detach")),
        _ => return None,
    };
    // Help and version are the whole tree's to print.
    let asks_help =
        |a: &OsString| matches!(a.to_str(), Some("-h" | "--help" | "-V" | "--version" | "help"));
    if args.iter().skip(2).any(asks_help) {
        return None;
    }
    let tree = GlobalArgs::augment_args(clap::Command::new("nicslice"))
        .subcommand_required(true)
        .subcommand(sub);
    let matches = tree.try_get_matches_from(args).ok()?;
    Cli::from_arg_matches(&matches).ok()
}

/// The first word that is not a global option or its value: the command
/// (`nicslice --state PATH attach ...` as well as `nicslice attach ...`).
fn command_name(args: &[OsString]) -> Option<&str> {
    let mut words = args.iter().skip(1);
    while let Some(word) = words.next() {
        match word.to_str()? {
            "--state" | "--host-netns" => {
                words.next()?;
            }
            "--json" | "--verbose" => {}
            w if w.starts_with("--state=") || w.starts_with("--host-netns=") => {}
            w if w.len() > 1 && w.starts_with('-') && w[1..].bytes().all(|b| b == b'v') => {}
            w => return Some(w),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Command;

    fn argv(line: &str) -> Vec<OsString> {
        line.split_whitespace().map(OsString::from).collect()
    }

    #[test]
    fn the_reduced_tree_gives_what_the_whole_tree_gives() {
        for line in [
            "nicslice attach lan --netns ns1",
            "nicslice attach lan --netns ns1 --ip 10.0.0.5 --mac 02:00:00:00:00:01 --json",
            "nicslice attach lan --netns ns1 --state /tmp/s.db -vv --host-netns host",
            "nicslice detach lan --netns ns1 --json",
            "nicslice --json attach lan --netns ns1",
            "nicslice --state /tmp/s.db -v --host-netns=h attach lan --netns ns1",
        ] {
            let fast = hot(&argv(line)).unwrap_or_else(|| panic!("{line}: not taken"));
            let whole = Cli::try_parse_from(argv(line)).unwrap();
            assert_eq!(format!("{fast:?}"), format!("{whole:?}"), "{line}");
        }
    }

    #[test]
    fn everything_else_goes_to_the_whole_tree() {
        for line in [
            "nicslice network ls",
            "nicslice --state /tmp/s.db network ls",
            "nicslice --state",
            "nicslice attach --help",
            "nicslice attach lan --netns ns1 --no-such-option",
            "nicslice attach",
            "nicslice",
        ] {
            assert!(hot(&argv(line)).is_none(), "{line}");
        }
        assert!(matches!(
            hot(&argv("nicslice detach lan --netns ns1")).map(|c| c.command),
            Some(Command::Detach(_))
        ));
    }
}
