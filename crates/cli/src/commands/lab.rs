//! `nicslice lab`: build the seeds' experiments in private namespaces on this
//! kernel, probe who reaches whom, and print each matrix beside what the
//! model predicts. Exit status 0 when every observation matches.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use nicslice_lab::capabilities::{self, Privileges};
use nicslice_lab::kept::KeptWorlds;
use nicslice_lab::run::{self, ScenarioResult};
use nicslice_lab::scenarios;

use crate::args::LabArgs;
use crate::commands::lab_report;

/// Set by SIGINT/SIGTERM: the lab stops probing and removes its namespaces.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() -> anyhow::Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::empty(), SigSet::empty());
    for sig in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { sigaction(sig, &action) }?;
    }
    Ok(())
}

pub fn run(args: LabArgs, json: bool) -> anyhow::Result<()> {
    let all = scenarios::all();
    if args.list {
        for s in &all {
            println!("{:<24} {:<9} {}", s.name, s.mode, s.topology.description);
        }
        return Ok(());
    }
    if !Privileges::read().sufficient() {
        anyhow::bail!(
            "the lab creates network namespaces and needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_NET_RAW)"
        );
    }
    let kept = KeptWorlds::default();
    if args.clean {
        return clean(&kept, json);
    }
    let unknown: Vec<&String> =
        args.only.iter().filter(|n| !all.iter().any(|s| s.name == n.as_str())).collect();
    if let Some(n) = unknown.first() {
        anyhow::bail!("no scenario {n}; `nicslice lab --list` names them");
    }
    let selected: Vec<_> = all
        .into_iter()
        .filter(|s| args.only.is_empty() || args.only.iter().any(|n| n == s.name))
        .filter(|s| args.mode.is_empty() || args.mode.iter().any(|m| m == s.mode))
        .collect();
    if selected.is_empty() {
        anyhow::bail!("no scenario matches --mode {}", args.mode.join(","));
    }
    let reaped = kept.reap_stale();
    if !reaped.stale.is_empty() {
        eprintln!(
            "removed {} namespace(s) left by an earlier lab that was killed",
            reaped.stale.len()
        );
    }
    for error in &reaped.errors {
        eprintln!("nicslice: could not remove a namespace left by a killed lab: {error}");
    }
    let ipvlan = capabilities::probe_kernel()?.iter().any(|c| c.feature == "ipvlan" && c.available);
    install_signal_handlers()?;
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let keep = args.keep.then_some(&kept);
    let results = run::run_all(selected, ipvlan, keep, &STOP, |r, n, total| {
        if !STOP.load(Ordering::Relaxed) {
            eprintln!("{}", lab_report::progress_line(r, n, total, tty));
        }
    });
    if STOP.load(Ordering::Relaxed) {
        eprint!("{}", lab_report::interrupted(&results));
        std::process::exit(130);
    }
    let color = std::io::stdout().is_terminal();
    let elapsed = started.elapsed().as_secs_f64();
    if json {
        crate::output::json(&serde_json::json!({
            "ok": results.iter().all(ScenarioResult::ok),
            "seconds": elapsed,
            "scenarios": results,
        }))?;
    } else if args.markdown {
        print!("{}", lab_report::markdown(&results, elapsed));
    } else {
        print!("{}", lab_report::text(&results, color));
        print!("{}", lab_report::summary(&results, elapsed, color));
        if args.keep {
            print!("{}", lab_report::keep_hint(&results));
        }
    }
    if args.keep && (json || args.markdown) {
        // Scripts read stdout; the person who asked to keep still hears how to leave.
        eprint!("{}", lab_report::keep_hint(&results));
    }
    if results.iter().all(ScenarioResult::ok) { Ok(()) } else { std::process::exit(1) }
}

/// `nicslice lab --clean`: remove what `--keep` left up and what killed labs
/// left behind.
fn clean(kept: &KeptWorlds, json: bool) -> anyhow::Result<()> {
    let done = kept.clean();
    if json {
        crate::output::json(&serde_json::json!({
            "removed": done.removed,
            "stale": done.stale,
            "kept_worlds": done.worlds,
            "errors": done.errors,
        }))?;
    } else if done.removed.is_empty() && done.stale.is_empty() && done.errors.is_empty() {
        println!("no lab namespaces to remove");
    } else {
        println!(
            "removed {} namespace(s) of {} kept lab world(s) and {} left by killed labs",
            done.removed.len(),
            done.worlds,
            done.stale.len()
        );
    }
    match done.errors.first() {
        None => Ok(()),
        Some(first) => anyhow::bail!(
            "could not remove everything ({} error(s)); first: {first}",
            done.errors.len()
        ),
    }
}
