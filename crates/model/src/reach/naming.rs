//! The words verdicts are made of: the [`Verdict`] constructor, the parties' names
//! as users know them (a station's label, "node1's ens160", a namespace's endpoint,
//! a switch port) and how two stations relate (parent and child, siblings). Shared
//! by `explain.rs` (passes) and `blame.rs` (blocks); depends on neither.

use super::rule::{Reach, Rule, Verdict};
use super::world::{NsId, StId, World};

pub(crate) fn make(rule: Rule, body: String, fix: Option<String>) -> Verdict {
    let word = match rule.reach() {
        Reach::Pass => "pass",
        Reach::Blocked => "blocked",
    };
    let reason = format!("{word}: {body}");
    Verdict { reach: rule.reach(), rule, reason, fix, unconfirmed: false, beyond: None }
}

pub(crate) fn name(w: &World, st: StId) -> &str {
    &w.st(st).label
}

/// "node1's ens160"
pub(crate) fn parent_of(w: &World, h: usize) -> String {
    format!("{}'s {}", w.hosts[h].name, w.hosts[h].parent_if)
}

pub(crate) fn ns_name(w: &World, ns: NsId) -> &str {
    w.ns_ep[ns].map_or("?", |e| w.eps[e].name.as_str())
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
