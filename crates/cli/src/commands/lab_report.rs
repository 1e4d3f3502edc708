//! Printing the lab's results: a matrix per scenario (colour on a terminal,
//! plain in a pipe), Markdown for docs, the reasons for blocked pairs grouped
//! by rule, and a summary.

use std::collections::BTreeMap;
use std::fmt::Write;

use nicslice_lab::run::{Observation, ScenarioResult};
use nicslice_model::reach::Reach;

const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const DIM: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const RESET: &str = "\x1b[0m";

fn paint(s: &str, code: &str, color: bool) -> String {
    if color { format!("{code}{s}{RESET}") } else { s.to_string() }
}

pub fn progress_line(r: &ScenarioResult, n: usize, total: usize, color: bool) -> String {
    let status = if let Some(why) = &r.skipped {
        paint(&format!("skipped: {why}"), DIM, color)
    } else if let Some(e) = &r.error {
        paint(&format!("ERROR: {e}"), RED, color)
    } else if r.mismatches() > 0 {
        paint(&format!("{} MISMATCH(ES)", r.mismatches()), RED, color)
    } else {
        paint("as predicted", GREEN, color)
    };
    format!(
        "[{n:>2}/{total}] {:<16} {:>3} probes {:>5.1}s  {status}",
        r.name,
        r.observations.len(),
        r.seconds
    )
}

fn cell(o: Option<&Observation>) -> (String, bool) {
    match o {
        None => ("·".to_string(), true),
        Some(o) => {
            let word = match o.observed {
                Reach::Pass => "pass",
                Reach::Blocked => "--",
            };
            if o.matches() { (word.to_string(), true) } else { (format!("{word}!"), false) }
        }
    }
}

fn find<'a>(r: &'a ScenarioResult, from: &str, to: &str) -> Option<&'a Observation> {
    r.observations.iter().find(|o| o.from == from && o.to == to)
}

/// Endpoints that were probed, in matrix order.
fn probed(r: &ScenarioResult) -> Vec<&String> {
    r.endpoints
        .iter()
        .filter(|e| r.observations.iter().any(|o| &o.from == *e || &o.to == *e))
        .collect()
}

/// Blocked pairs (and mismatches) grouped by the rule and fix that explain them.
fn reasons(r: &ScenarioResult) -> Vec<(String, Vec<String>, bool)> {
    let mut groups: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
    for o in &r.observations {
        if o.matches() && o.observed == Reach::Pass {
            continue;
        }
        let mut text = o.verdict.rule.summary().to_string();
        if let Some(fix) = &o.verdict.fix {
            text = format!("{text}; fix: {fix}");
        }
        if !o.matches() {
            text = format!(
                "observed {}, model predicted {} ({})",
                word(o.observed),
                word(o.predicted),
                o.verdict.reason
            );
        }
        groups.entry((o.matches(), text)).or_default().push(format!("{} → {}", o.from, o.to));
    }
    groups.into_iter().map(|((ok, text), pairs)| (text, pairs, ok)).collect()
}

fn word(r: Reach) -> &'static str {
    match r {
        Reach::Pass => "pass",
        Reach::Blocked => "blocked",
    }
}

pub fn text(results: &[ScenarioResult], color: bool) -> String {
    let mut out = String::new();
    for r in results {
        let head = format!("{} — {}", r.name, r.description);
        let _ = writeln!(out, "\n{}", paint(&head, BOLD, color));
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "  skipped: {why}");
            continue;
        }
        if let Some(e) = &r.error {
            let _ = writeln!(out, "  {}", paint(&format!("error: {e}"), RED, color));
        }
        let eps = probed(r);
        if eps.is_empty() {
            continue;
        }
        let width = eps.iter().map(|e| e.chars().count()).max().unwrap_or(4).max(9);
        let _ = write!(out, "  {:<width$}", "from \\ to");
        for e in &eps {
            let _ = write!(out, " {:>width$}", e);
        }
        out.push('\n');
        for from in &eps {
            let _ = write!(out, "  {:<width$}", from);
            for to in &eps {
                let (text, ok) =
                    if from == to { ("·".to_string(), true) } else { cell(find(r, from, to)) };
                let padded = format!(" {text:>width$}");
                let code = if !ok {
                    RED
                } else if text == "pass" {
                    GREEN
                } else {
                    DIM
                };
                out.push_str(&paint(&padded, code, color));
            }
            out.push('\n');
        }
        for (text, pairs, ok) in reasons(r) {
            let line = format!("  {}: {}", pairs.join(", "), text);
            out.push_str(&if ok { line } else { paint(&line, RED, color) });
            out.push('\n');
        }
    }
    out
}

pub fn markdown(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(out, "### {} — {}\n", r.name, r.description);
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "Skipped: {why}\n");
            continue;
        }
        let eps = probed(r);
        let _ = writeln!(
            out,
            "| from \\ to | {} |",
            eps.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(" | ")
        );
        let _ = writeln!(out, "|---|{}", "---|".repeat(eps.len()));
        for from in &eps {
            let cells: Vec<String> = eps
                .iter()
                .map(|to| if from == to { "·".into() } else { cell(find(r, from, to)).0 })
                .collect();
            let _ = writeln!(out, "| {from} | {} |", cells.join(" | "));
        }
        out.push('\n');
        for (text, pairs, _) in reasons(r) {
            let _ = writeln!(out, "- {}: {}", pairs.join(", "), text);
        }
        out.push('\n');
    }
    out
}

pub fn summary(results: &[ScenarioResult], seconds: f64, color: bool) -> String {
    let probes: usize = results.iter().map(|r| r.observations.len()).sum();
    let mismatches: usize = results.iter().map(ScenarioResult::mismatches).sum();
    let errors = results.iter().filter(|r| r.error.is_some()).count();
    let skipped: Vec<&str> =
        results.iter().filter(|r| r.skipped.is_some()).map(|r| r.name.as_str()).collect();
    let mut line = format!(
        "\n{} scenarios, {probes} probes in {seconds:.1}s: {mismatches} mismatch(es), {errors} error(s)",
        results.len() - skipped.len()
    );
    if !skipped.is_empty() {
        line.push_str(&format!("; skipped (kernel lacks them): {}", skipped.join(", ")));
    }
    let ok = mismatches == 0 && errors == 0;
    format!("{}\n", paint(&line, if ok { GREEN } else { RED }, color))
}

pub fn keep_hint(results: &[ScenarioResult]) -> String {
    let mut out = String::from(
        "\nThe namespaces are still up (--keep). Enter one with `ip netns exec NAME bash`:\n",
    );
    let mut all = Vec::new();
    for r in results {
        let mut names: Vec<_> = r.namespaces.iter().collect();
        names.sort();
        for (endpoint, ns) in names {
            let _ = writeln!(out, "  {:<16} {:<10} {ns}", r.name, endpoint);
            all.push(ns.clone());
        }
    }
    let _ = writeln!(
        out,
        "Remove them all with:\n  for n in {}; do ip netns del $n; done",
        all.join(" ")
    );
    out
}
