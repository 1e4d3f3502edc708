//! The indexes of a built [`World`]: who carries an address, endpoints by name and by
//! namespace, router legs, each namespace's routes by destination, and per host its
//! ipvlan mode, passthru child, macvlan children by MAC and source-mode listeners.
//! Derived once from what `build.rs` laid out, so that a prediction walks the same
//! few steps whether a parent has 4 children or 400.

use std::collections::HashMap;

use super::world::{Driver, MacId, Role, World};
use crate::link::MacvlanMode;

impl World {
    /// Fills the indexes; called once, after every station, route and list is in.
    pub(crate) fn index(&mut self) {
        self.owner.clear();
        for (id, s) in self.stations.iter().enumerate() {
            for a in &s.addrs {
                self.owner.entry(a.addr()).or_insert(id);
            }
        }
        self.ep_by_name.clear();
        self.ns_ep = vec![None; self.nss.len()];
        for (i, e) in self.eps.iter().enumerate() {
            self.ep_by_name.entry(e.name.clone()).or_insert(i);
            self.ns_ep[e.ns].get_or_insert(i);
        }
        self.router_legs = (0..self.stations.len())
            .filter(|s| matches!(self.stations[*s].role, Role::RouterLan(_) | Role::RouterFar(_)))
            .collect();
        for ns in &mut self.nss {
            let mut by_prefix: Vec<(u8, bool, HashMap<_, Vec<usize>>)> = Vec::new();
            for (i, r) in ns.routes.iter().enumerate() {
                let key = (r.to.prefix_len(), r.to.addr().is_ipv4());
                let bucket = match by_prefix.iter().position(|(l, v4, _)| (*l, *v4) == key) {
                    Some(b) => b,
                    None => {
                        by_prefix.push((key.0, key.1, HashMap::new()));
                        by_prefix.len() - 1
                    }
                };
                by_prefix[bucket].2.entry(r.to).or_default().push(i);
            }
            by_prefix.sort_by_key(|b| std::cmp::Reverse(b.0));
            ns.by_prefix = by_prefix;
        }
        for h in 0..self.hosts.len() {
            let (mut ipvlan, mut passthru) = (None, None);
            let (mut by_mac, mut listeners) = (HashMap::new(), HashMap::<MacId, Vec<_>>::new());
            for &s in &self.hosts[h].slaves {
                match self.driver(s) {
                    Some(Driver::Ipvlan { mode, .. }) => {
                        ipvlan.get_or_insert(*mode);
                    }
                    Some(Driver::Macvlan { mode, nodst, list }) => {
                        by_mac.entry(self.stations[s].mac).or_insert(s);
                        if *mode == MacvlanMode::Passthru {
                            passthru.get_or_insert(s);
                        }
                        if *mode == MacvlanMode::Source {
                            for mac in list {
                                let who = listeners.entry(*mac).or_default();
                                // A MAC listed twice by one child counts once.
                                if who.last().is_none_or(|(x, _)| *x != s) {
                                    who.push((s, *nodst));
                                }
                            }
                        }
                    }
                    None => {}
                }
            }
            let host = &mut self.hosts[h];
            (host.ipvlan, host.passthru) = (ipvlan, passthru);
            (host.macvlan_by_mac, host.listeners) = (by_mac, listeners);
        }
    }
}
