//! Turns a walk's outcome into a [`Verdict`]: names the rule of a pass from the notes
//! the walk left and hands a block to `blame.rs` (the words of both come from
//! `naming.rs`). Decides nothing about frames or packets itself.

use super::blame;
use super::l2::Drop;
use super::l3::{Blocked, Note, Stop};
use super::naming::{Rel, make, name, ns_name, parent_of, port_name, relation};
use super::rule::{Rule, Verdict};
use super::world::{EpKind, EpView, Role, Segment, StId, World};

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
        Segment::Far(r) => w.router_legs.iter().find(|s| w.st(**s).role == Role::RouterFar(r)),
        Segment::Lan => None,
    });
    let segment = match far {
        Some(leg) => format!("{}'s second subnet", ns_name(w, w.st(*leg).ns)),
        None => "the switch's L2 segment".to_string(),
    };
    let body = format!("{} and {} share {segment}", from.name, to.name);
    make(Rule::SameSegment, body, None)
}
