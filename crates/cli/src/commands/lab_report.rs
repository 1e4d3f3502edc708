//! Printing the lab's results: a matrix per scenario (colour on a terminal,
//! plain in a pipe) whose cells read echo/ARP (`pass/yes`, `--/no`), Markdown
//! for docs, the reasons for blocked pairs grouped by rule (and for ARP answers
//! that tell another story than the echo), and a summary.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;

use nicslice_lab::neighbours::{Answer, NeighbourCheck};
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
    } else if r.not_probed() > 0 {
        paint(&format!("{} NOT PROBED", r.not_probed()), RED, color)
    } else {
        paint("as predicted", GREEN, color)
    };
    let (echo, arp, ndp) = r.probes();
    format!(
        "[{n:>2}/{total}] {:<24} {echo:>3} echo {:>3} ARP/NDP {:>5.1}s  {status}",
        r.name,
        arp + ndp,
        r.seconds
    )
}

/// What the cells say, printed under each matrix.
const LEGEND: &str = "Cells: echo/ARP (pass or -- for the ping, then yes or no for an answer to an ARP \
    request on the shared subnet, and /NDP likewise where IPv6 is set up); ! marks a mismatch with \
    the model, n/a and ? what was not probed.";

/// The cell's text and whether it is as predicted: "pass", "--" (blocked), then
/// "/yes" or "/no" for each ARP/NDP request of the pair; "!" after a part that
/// is a mismatch, "n/a" for an echo and "?" for a request that was not sent.
fn cell(r: &ScenarioResult, o: Option<&Observation>) -> (String, bool) {
    let Some(o) = o else { return ("·".to_string(), true) };
    let mut text = match o.observed {
        Some(Reach::Pass) => "pass".to_string(),
        Some(Reach::Blocked) => "--".to_string(),
        None => "n/a".to_string(),
    };
    if o.mismatches() {
        text.push('!');
    }
    let mut ok = o.matches();
    for n in r.neighbours_of(&o.from, &o.to) {
        text.push_str(match n.observed {
            Some(Answer::Answered) => "/yes",
            Some(Answer::Unanswered) => "/no",
            None => "/?",
        });
        if n.mismatches() {
            text.push('!');
        }
        ok &= n.matches();
    }
    (text, ok)
}

/// The name of a check's protocol.
fn protocol(n: &NeighbourCheck) -> &'static str {
    if n.target.is_ipv4() { "ARP" } else { "NDP" }
}

/// What to say about a pair's ARP/NDP check, when anything: a mismatch, a
/// request not sent, or an answer that tells another story than the echo.
fn neighbour_note(o: &Observation, n: &NeighbourCheck) -> Option<String> {
    let p = protocol(n);
    let answer = |a: Answer| match a {
        Answer::Answered => "answered",
        Answer::Unanswered => "unanswered",
    };
    match (n.observed, o.observed) {
        (None, _) => Some(format!(
            "{p} not probed: {}; model predicted {}",
            n.not_probed.as_deref().unwrap_or("?"),
            answer(n.predicted)
        )),
        (Some(seen), _) if seen != n.predicted => Some(format!(
            "{p} observed {}, model predicted {} ({})",
            answer(seen),
            answer(n.predicted),
            n.reason
        )),
        (Some(Answer::Answered), Some(Reach::Blocked)) => {
            Some(format!("{p} answered although the echo is blocked"))
        }
        (Some(Answer::Unanswered), Some(Reach::Pass)) => {
            let why = n.reason.strip_prefix("unanswered: ").unwrap_or(&n.reason);
            Some(format!("{p} unanswered although the echo passes: {why}"))
        }
        _ => None,
    }
}

/// The observations by (from, to), looked up once per cell: a matrix of n
/// endpoints costs n² lookups, not n⁴ scans.
fn by_pair(r: &ScenarioResult) -> HashMap<(&str, &str), &Observation> {
    r.observations.iter().map(|o| ((o.from.as_str(), o.to.as_str()), o)).collect()
}

/// Endpoints that were probed, in matrix order.
fn probed(r: &ScenarioResult) -> Vec<&String> {
    let seen: HashSet<&str> =
        r.observations.iter().flat_map(|o| [o.from.as_str(), o.to.as_str()]).collect();
    r.endpoints.iter().filter(|e| seen.contains(e.as_str())).collect()
}

/// Blocked pairs (and mismatches) grouped by the rule and fix that explain them.
fn reasons(r: &ScenarioResult) -> Vec<(String, Vec<String>, bool)> {
    let mut groups: BTreeMap<(bool, String), Vec<String>> = BTreeMap::new();
    for o in &r.observations {
        if o.matches() && o.observed == Some(Reach::Pass) {
            continue;
        }
        let mut text = o.verdict.rule.summary().to_string();
        if let Some(fix) = &o.verdict.fix {
            text = format!("{text}; fix: {fix}");
        }
        if let (None, Some(why)) = (o.observed, &o.not_probed) {
            text = format!("not probed: {why}; model predicted {}", word(o.predicted));
        } else if let (false, Some(seen)) = (o.matches(), o.observed) {
            text = format!(
                "observed {}, model predicted {} ({})",
                word(seen),
                word(o.predicted),
                o.verdict.reason
            );
        }
        groups.entry((o.matches(), text)).or_default().push(format!("{} → {}", o.from, o.to));
    }
    for o in &r.observations {
        for n in r.neighbours_of(&o.from, &o.to) {
            if let Some(text) = neighbour_note(o, n) {
                let pair = format!("{} → {}", o.from, o.to);
                groups.entry((n.matches(), text)).or_default().push(pair);
            }
        }
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
        let find = by_pair(r);
        let cells = r.observations.iter().map(|o| cell(r, Some(o)).0.chars().count());
        let names = eps.iter().map(|e| e.chars().count());
        let width = names.chain(cells).max().unwrap_or(4).max(9);
        let _ = write!(out, "  {:<width$}", "from \\ to");
        for e in &eps {
            let _ = write!(out, " {:>width$}", e);
        }
        out.push('\n');
        for from in &eps {
            let _ = write!(out, "  {:<width$}", from);
            for to in &eps {
                let (text, ok) = if from == to {
                    ("·".to_string(), true)
                } else {
                    cell(r, find.get(&(from.as_str(), to.as_str())).copied())
                };
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
    if results.iter().any(|r| r.neighbour_checks().next().is_some()) {
        let _ = writeln!(out, "\n{}", paint(LEGEND, DIM, color));
    }
    out
}

/// Markdown: a heading, the error if any, a table and the reasons per
/// scenario, then the summary line.
pub fn markdown(results: &[ScenarioResult], seconds: f64) -> String {
    let mut out = String::new();
    for r in results {
        let _ = writeln!(out, "### {} — {}\n", r.name, r.description);
        if let Some(why) = &r.skipped {
            let _ = writeln!(out, "Skipped: {why}\n");
            continue;
        }
        if let Some(e) = &r.error {
            let _ = writeln!(out, "**Error:** {e}\n");
        }
        let eps = probed(r);
        if eps.is_empty() {
            continue;
        }
        let find = by_pair(r);
        let _ = writeln!(
            out,
            "| from \\ to | {} |",
            eps.iter().map(|e| e.as_str()).collect::<Vec<_>>().join(" | ")
        );
        let _ = writeln!(out, "|---|{}", "---|".repeat(eps.len()));
        for from in &eps {
            let cells: Vec<String> = eps
                .iter()
                .map(|to| match from == to {
                    true => "·".into(),
                    false => cell(r, find.get(&(from.as_str(), to.as_str())).copied()).0,
                })
                .collect();
            let _ = writeln!(out, "| {from} | {} |", cells.join(" | "));
        }
        out.push('\n');
        for (text, pairs, ok) in reasons(r) {
            let mark = if ok { "" } else { "**" };
            let _ = writeln!(out, "- {mark}{}: {}{mark}", pairs.join(", "), text);
        }
        out.push('\n');
    }
    if results.iter().any(|r| r.neighbour_checks().next().is_some()) {
        let _ = writeln!(out, "{LEGEND}\n");
    }
    let _ = writeln!(out, "{}", summary_line(results, seconds).0.trim_start());
    out
}

/// The summary line and whether the whole lab is as predicted.
fn summary_line(results: &[ScenarioResult], seconds: f64) -> (String, bool) {
    let unprobed: usize = results.iter().map(ScenarioResult::not_probed).sum();
    let (mut echo, mut arp, mut ndp) = (0, 0, 0);
    for (e, a, n) in results.iter().map(ScenarioResult::probes) {
        (echo, arp, ndp) = (echo + e, arp + a, ndp + n);
    }
    let probes = match ndp {
        0 => format!("{echo} echo and {arp} ARP probes"),
        _ => format!("{echo} echo, {arp} ARP and {ndp} NDP probes"),
    };
    let mismatches: usize = results.iter().map(ScenarioResult::mismatches).sum();
    let errors = results.iter().filter(|r| r.error.is_some()).count();
    let skipped: Vec<&str> =
        results.iter().filter(|r| r.skipped.is_some()).map(|r| r.name.as_str()).collect();
    let mut line = format!(
        "\n{} scenarios, {probes} in {seconds:.1}s: {mismatches} mismatch(es), {errors} error(s)",
        results.len() - skipped.len()
    );
    if unprobed > 0 {
        line.push_str(&format!(", {unprobed} pair(s) not probed"));
    }
    if !skipped.is_empty() {
        line.push_str(&format!("; skipped (kernel lacks them): {}", skipped.join(", ")));
    }
    (line, mismatches == 0 && errors == 0 && unprobed == 0)
}

pub fn summary(results: &[ScenarioResult], seconds: f64, color: bool) -> String {
    let (line, ok) = summary_line(results, seconds);
    format!("{}\n", paint(&line, if ok { GREEN } else { RED }, color))
}

/// What `--keep` left up, how to enter it and how to remove it.
pub fn keep_hint(results: &[ScenarioResult]) -> String {
    let mut rows = Vec::new();
    for r in results {
        let mut names: Vec<_> = r.namespaces.iter().collect();
        names.sort_by(|a, b| a.1.cmp(b.1));
        for (endpoint, ns) in names {
            rows.push(format!("  {:<20} {:<12} {ns}", r.name, endpoint));
        }
    }
    if rows.is_empty() {
        return "\nNo namespace was kept (no scenario was built).\n".to_string();
    }
    let mut out = format!(
        "\nThe lab's {} namespace(s) are still up (--keep):\n  {:<20} {:<12} namespace\n",
        rows.len(),
        "scenario",
        "endpoint"
    );
    for row in rows {
        out.push_str(&row);
        out.push('\n');
    }
    out.push_str(
        "Enter one with `ip netns exec NAMESPACE bash` (or `nsenter --net=/run/netns/NAMESPACE`).\n\
         Remove them all with `nicslice lab --clean`.\n",
    );
    out
}

/// The truth after Ctrl-C: what was removed and what `--keep` left up.
pub fn interrupted(results: &[ScenarioResult]) -> String {
    let kept: Vec<&ScenarioResult> = results.iter().filter(|r| !r.namespaces.is_empty()).collect();
    if kept.is_empty() {
        return "nicslice: lab interrupted; its namespaces were removed\n".to_string();
    }
    let names: Vec<&str> = kept.iter().map(|r| r.name.as_str()).collect();
    let removed = results.iter().filter(|r| r.skipped.is_none()).count() - kept.len();
    let others = match removed {
        0 => String::new(),
        n => format!("; those of the {n} other(s) were removed"),
    };
    format!(
        "nicslice: lab interrupted; the namespaces of {} built scenario(s) were kept as --keep asked ({}){others}\n{}",
        kept.len(),
        names.join(", "),
        keep_hint(results)
    )
}

#[cfg(test)]
mod tests {
    use nicslice_lab::neighbours::{Answer, NeighbourCheck};
    use nicslice_lab::run::{Observation, ScenarioResult};
    use nicslice_model::reach::{Reach, Rule, Verdict};

    use super::{interrupted, keep_hint, markdown, summary, text};

    fn seen(from: &str, to: &str, observed: Option<Reach>, predicted: Reach) -> Observation {
        Observation {
            from: from.into(),
            to: to.into(),
            address: None,
            observed,
            not_probed: observed.is_none().then(|| format!("{to} has no address to probe")),
            predicted,
            verdict: Verdict {
                reach: predicted,
                rule: if predicted == Reach::Pass { Rule::SameSegment } else { Rule::ParentChild },
                reason: String::new(),
                fix: None,
                unconfirmed: false,
                beyond: None,
            },
        }
    }

    fn arp(from: &str, to: &str, observed: Option<Answer>, predicted: Answer) -> NeighbourCheck {
        NeighbourCheck {
            from: from.into(),
            to: to.into(),
            protocol: "arp",
            sender: "10.0.0.1".parse().unwrap(),
            target: "10.0.0.2".parse().unwrap(),
            observed,
            not_probed: observed.is_none().then(|| "no interface with 10.0.0.1 in a".into()),
            predicted,
            rule: None,
            reason: "answered by b".into(),
        }
    }

    fn scenario(name: &str, observations: Vec<Observation>) -> ScenarioResult {
        let endpoints = vec!["a".into(), "b".into()];
        ScenarioResult { observations, ..ScenarioResult::new(name, "bridge", "test", endpoints) }
    }

    #[test]
    fn a_pair_not_probed_is_na_and_counted_apart_in_the_summary() {
        let r = scenario(
            "s",
            vec![
                seen("a", "b", Some(Reach::Pass), Reach::Pass),
                seen("b", "a", None, Reach::Blocked),
            ],
        );
        let out = text(std::slice::from_ref(&r), false);
        assert!(out.contains("n/a"), "{out}");
        assert!(out.contains("b → a: not probed: a has no address to probe"), "{out}");
        let line = summary(&[r], 1.0, false);
        assert!(
            line.contains(
                "1 echo and 0 ARP probes in 1.0s: 0 mismatch(es), 0 error(s), 1 pair(s) not probed"
            ),
            "{line}"
        );
    }

    #[test]
    fn markdown_carries_errors_and_the_summary() {
        let mut broken = scenario("broken", Vec::new());
        broken.error = Some("create veth: File exists".into());
        let fine = scenario(
            "fine",
            vec![
                seen("a", "b", Some(Reach::Pass), Reach::Pass),
                seen("b", "a", Some(Reach::Pass), Reach::Blocked),
            ],
        );
        let md = markdown(&[broken, fine], 2.5);
        assert!(md.contains("### broken — test\n\n**Error:** create veth: File exists"), "{md}");
        assert!(md.contains("| a | · | pass |") && md.contains("| b | pass! | · |"), "{md}");
        assert!(md.contains("- **b → a: observed pass, model predicted blocked"), "{md}");
        assert!(
            md.ends_with(
                "2 scenarios, 2 echo and 0 ARP probes in 2.5s: 1 mismatch(es), 1 error(s)\n"
            ),
            "{md}"
        );
    }

    #[test]
    fn arp_shows_as_a_cell_suffix_and_its_mismatch_counts() {
        let ab = seen("a", "b", Some(Reach::Blocked), Reach::Blocked);
        let ba = seen("b", "a", Some(Reach::Blocked), Reach::Blocked);
        let mut r = scenario("s", vec![ab, ba]);
        r.neighbours = vec![
            arp("a", "b", Some(Answer::Answered), Answer::Answered),
            arp("b", "a", Some(Answer::Answered), Answer::Unanswered),
        ];
        assert_eq!((r.mismatches(), r.probes()), (1, (2, 2, 0)));
        assert!(!r.ok());
        let out = text(std::slice::from_ref(&r), false);
        assert!(out.contains("  a                 ·    --/yes\n"), "{out}");
        assert!(out.contains("  b           --/yes!         ·\n"), "{out}");
        assert!(out.contains("Cells: echo/ARP (pass or --"), "{out}");
        assert!(out.contains("a → b: ARP answered although the echo is blocked"), "{out}");
        assert!(
            out.contains(
                "b → a: ARP observed answered, model predicted unanswered (answered by b)"
            ),
            "{out}"
        );
        let line = summary(std::slice::from_ref(&r), 1.0, false);
        assert!(line.contains("2 echo and 2 ARP probes in 1.0s: 1 mismatch(es)"), "{line}");
        let mut r = scenario("s", vec![seen("a", "b", Some(Reach::Pass), Reach::Pass)]);
        r.neighbours = vec![arp("a", "b", None, Answer::Answered)];
        assert_eq!((r.mismatches(), r.not_probed()), (0, 1));
        let out = text(&[r], false);
        assert!(out.contains("pass/?"), "{out}");
        assert!(out.contains("ARP not probed: no interface with 10.0.0.1 in a"), "{out}");
    }

    #[test]
    fn keep_hint_names_namespaces_and_the_clean_command() {
        let mut r = scenario("bridge", Vec::new());
        r.namespaces.insert("ns1".into(), "nsl-labbridge-1-0-c0_0".into());
        let hint = keep_hint(std::slice::from_ref(&r));
        assert!(
            hint.contains("bridge               ns1          nsl-labbridge-1-0-c0_0"),
            "{hint}"
        );
        assert!(hint.contains("ip netns exec NAMESPACE bash"), "{hint}");
        assert!(hint.contains("nicslice lab --clean"), "{hint}");
        let said = interrupted(std::slice::from_ref(&r));
        assert!(said.contains("were kept as --keep asked (bridge)"), "{said}");
        let said = interrupted(&[scenario("bridge", Vec::new())]);
        assert_eq!(said, "nicslice: lab interrupted; its namespaces were removed\n");
    }
}
