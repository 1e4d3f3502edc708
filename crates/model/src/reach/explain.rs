//! Turns a walk's outcome into a [`Verdict`]: names the rule of a pass from the notes
//! the walk left, hands a block to `blame.rs`, and holds the naming helpers both use.
//! Decides nothing about frames or packets itself.

use super::l2::Drop;
use super::l3::{Blocked, Note, Stop};
use super::rule::{Reach, Rule};
use super::world::{EpKind, EpView, NsId, Segment, StId, World};
use super::{Verdict, blame};

pub(crate) fn verdict(
    w: &World,
    from: &EpView,
    to: &EpView,
    out: Result<Vec<Note>, Blocked>,
) -> Verdict {
    match out {
        Ok(notes) => pass(w, from, to, &notes),
        Err(b) => match own_child(w, from, to) {
            // Wherever the walk stopped (no route back, no ARP answer, a dropped
            // frame), the cause between a host without a shim and its own child is
            // the parent rule, and its fix is the shim.
            Some((h, child)) if !matches!(b.stop, Stop::Frame { drop: Drop::Down { .. }, .. }) => {
                blame::parent_child(w, h, child)
            }
            _ => blame::blocked(w, b),
        },
    }
}

/// (host, child) when one endpoint is a shim-less host and the other its own child.
fn own_child(w: &World, a: &EpView, b: &EpView) -> Option<(usize, StId)> {
    let pair = match (a.kind, b.kind) {
        (EpKind::Host(h), EpKind::Child(c)) | (EpKind::Child(c), EpKind::Host(h)) => (h, c),
        _ => return None,
    };
    (w.host_of(pair.1) == Some(pair.0) && w.hosts[pair.0].shim.is_none()).then_some(pair)
}

pub(crate) fn make(rule: Rule, body: String, fix: Option<String>) -> Verdict {
    let word = match rule.reach() {
        Reach::Pass => "pass",
        Reach::Blocked => "blocked",
    };
    Verdict { reach: rule.reach(), rule, reason: format!("{word}: {body}"), fix }
}

pub(crate) fn name(w: &World, st: StId) -> &str {
    &w.st(st).label
}

/// "node1's ens160"
pub(crate) fn parent_of(w: &World, h: usize) -> String {
    format!("{}'s {}", w.hosts[h].name, w.hosts[h].parent_if)
}

pub(crate) fn ns_name(w: &World, ns: NsId) -> &str {
    w.eps.iter().find(|e| e.ns == ns).map_or("?", |e| e.name.as_str())
}

pub(crate) fn port_name(w: &World, h: usize) -> &str {
    &w.ports[w.hosts[h].port].name
}

pub(crate) fn first_addr(w: &World, st: StId) -> String {
    w.st(st).addrs.first().map_or_else(|| name(w, st).to_string(), |a| a.addr().to_string())
}

pub(crate) enum Rel {
    /// `child` is a child of host `h`, the other side its parent.
    ParentChild {
        h: usize,
        child: StId,
    },
    Siblings {
        h: usize,
    },
    Other,
}

pub(crate) fn relation(w: &World, a: StId, b: StId) -> Rel {
    match (w.host_of(a), w.host_of(b)) {
        (Some(x), Some(y)) if x == y && a != b => {
            let parent = w.hosts[x].parent;
            if a == parent {
                Rel::ParentChild { h: x, child: b }
            } else if b == parent {
                Rel::ParentChild { h: x, child: a }
            } else {
                Rel::Siblings { h: x }
            }
        }
        _ => Rel::Other,
    }
}

fn pass(w: &World, from: &EpView, to: &EpView, notes: &[Note]) -> Verdict {
    let pairs: Vec<(StId, StId)> = notes
        .iter()
        .filter_map(|n| match *n {
            Note::Frame { from, to, .. } | Note::IpvlanLocal { from, to } => Some((from, to)),
            _ => None,
        })
        .collect();
    for &(a, b) in &pairs {
        if let Rel::Siblings { h } = relation(w, a, b) {
            let (shim, child) = if w.is_shim(a) { (a, b) } else { (b, a) };
            if w.is_shim(shim) && !w.is_shim(child) {
                let body = format!(
                    "{} reaches {} through its shim {} on {}",
                    w.hosts[h].name,
                    name(w, child),
                    name(w, shim),
                    w.hosts[h].parent_if
                );
                return make(Rule::ShimPath, body, None);
            }
        }
    }
    let frames = notes.iter().filter_map(|n| match *n {
        Note::Frame { from, to, hop } => Some((from, to, hop)),
        _ => None,
    });
    let frames: Vec<_> = frames.collect();
    for &(a, b, hop) in &frames {
        if let (true, Rel::ParentChild { h, child }) = (hop.hairpin, relation(w, a, b)) {
            let body = format!(
                "switch port {} reflects frames (hairpin), so {} and its own child {} meet through the switch",
                port_name(w, h),
                w.hosts[h].name,
                name(w, child)
            );
            return make(Rule::ParentViaHairpin, body, None);
        }
    }
    if let Some(ns) =
        notes.iter().find_map(|n| if let Note::Routed { ns } = n { Some(*ns) } else { None })
    {
        let body =
            format!("{} routes between {} and {} both ways", ns_name(w, ns), from.name, to.name);
        return make(Rule::Routed, body, None);
    }
    let via_parent = notes.iter().find_map(|n| match *n {
        Note::ViaParent { to } => w.host_of(to).map(|h| (to, h)),
        _ => None,
    });
    if let Some((c, h)) = via_parent {
        let body = format!(
            "the route via {}'s address brings frames to {}, and ipvlan hands them to {} by address",
            w.hosts[h].name,
            w.hosts[h].parent_if,
            name(w, c)
        );
        return make(Rule::IpvlanRoutedViaParent, body, None);
    }
    if let Some(&(a, b, _)) = frames.iter().find(|f| f.2.source_list) {
        let body = format!("{}'s MAC is on source-mode child {}'s list", name(w, a), name(w, b));
        return make(Rule::SourceListed, body, None);
    }
    for &(a, b, hop) in &frames {
        if let Rel::Siblings { h } = relation(w, a, b) {
            let (x, y, on) = (name(w, a), name(w, b), parent_of(w, h));
            let (rule, body) = if hop.hairpin {
                let port = port_name(w, h);
                let body = format!(
                    "{x} and {y} on {on} meet through switch port {port}, which reflects frames (hairpin)"
                );
                (Rule::HairpinReflection, body)
            } else if w.macvlan_mode(a).is_some() {
                let body = format!(
                    "{x} and {y} are bridge-mode macvlan children of {on}, switched inside the kernel"
                );
                (Rule::BridgeSiblings, body)
            } else {
                let body = format!(
                    "{x} and {y} are ipvlan l2 children of {on}, switched inside the kernel by address"
                );
                (Rule::IpvlanL2Siblings, body)
            };
            return make(rule, body, None);
        }
    }
    if let Some((a, b)) = notes.iter().find_map(|n| match *n {
        Note::IpvlanLocal { from, to } => Some((from, to)),
        _ => None,
    }) {
        let on = w.host_of(a).map(|h| parent_of(w, h)).unwrap_or_default();
        let body = format!(
            "{} and {} are ipvlan l3 children of {on}; ipvlan routes between them inside the kernel, whatever their subnets",
            name(w, a),
            name(w, b)
        );
        return make(Rule::IpvlanL3Siblings, body, None);
    }
    let far = [from, to].into_iter().find_map(|e| match w.st(e.st).seg {
        Segment::Far(r) => w.eps.iter().find(|x| x.kind == EpKind::Router(r)),
        Segment::Lan => None,
    });
    let segment = match far {
        Some(r) => format!("{}'s second subnet", r.name),
        None => "the switch's L2 segment".to_string(),
    };
    let body = format!("{} and {} share {segment}", from.name, to.name);
    make(Rule::SameSegment, body, None)
}
