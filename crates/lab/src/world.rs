//! A [`World`]: a set of namespaces with a unique prefix, deleted (with every
//! interface inside) when the world drops, plus builders for the seeds'
//! topology: a switch namespace with a bridge and hosts whose parent is a veth
//! plugged into that bridge. Kept and stale worlds are `kept.rs`'s.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use nicslice_kernel::{Netns, Result, RouteSocket, SimpleKind, netns};

use crate::kept::KeptWorlds;

static WORLD_SEQ: AtomicU32 = AtomicU32::new(0);

/// Namespaces created for one experiment or test.
pub struct World {
    prefix: String,
    created: Vec<String>,
    keep: bool,
}

/// A host: a namespace holding a parent interface wired into the switch.
pub struct Host {
    pub netns: Netns,
    pub netns_name: String,
    /// The parent's name inside the host namespace.
    pub parent: String,
    /// The switch-side veth, a port of the bridge.
    pub switch_port: String,
}

impl World {
    /// A world whose namespaces are named `nsl-TAG-PID-N-ROLE`: unique per
    /// process and call, so tests can run in parallel. The first world of a
    /// process removes the worlds of processes that died without removing
    /// theirs (a test run killed part-way), as the lab does; kept ones stay.
    pub fn new(tag: &str) -> World {
        static REAPED: std::sync::Once = std::sync::Once::new();
        REAPED.call_once(|| {
            for error in KeptWorlds::default().reap_stale().errors {
                eprintln!("nicslice: a killed run's world could not be removed: {error}");
            }
        });
        let n = WORLD_SEQ.fetch_add(1, Ordering::Relaxed);
        World {
            prefix: format!("nsl-{}-{}-{n}", tag.replace('-', "_"), std::process::id()),
            created: Vec::new(),
            keep: false,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Leave everything in place when dropped (`nicslice lab --keep`), and
    /// record the world in `kept` so that no later lab reaps it as stale and
    /// `nicslice lab --clean` can find it. Nothing is kept if recording fails.
    pub fn keep(&mut self, kept: &KeptWorlds) -> std::io::Result<()> {
        kept.mark(&self.prefix)?;
        self.keep = true;
        Ok(())
    }

    pub fn namespace_names(&self) -> &[String] {
        &self.created
    }

    /// The full name a role gets in this world.
    pub fn name_of(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// Creates a namespace for `role` with `lo` up.
    pub fn netns(&mut self, role: &str) -> Result<Netns> {
        let name = self.name_of(role);
        let ns = netns::create_named(&name)?;
        self.created.push(name);
        let mut sock = RouteSocket::open_in(&ns)?;
        if let Some(lo) = sock.link_by_name("lo")? {
            sock.set_up(lo.index, true)?;
        }
        Ok(ns)
    }

    /// A switch namespace with bridge `br0` up, carrying `address` if given
    /// (seed 003's 192.168.0.1 on br0).
    pub fn switch(&mut self, address: Option<IpNet>) -> Result<Netns> {
        let ns = self.netns("sw")?;
        let mut sock = RouteSocket::open_in(&ns)?;
        sock.create_simple(SimpleKind::Bridge, "br0", None)?;
        let br = sock.require_link("br0", "switch")?;
        if let Some(a) = address {
            sock.add_address(br.index, a)?;
        }
        sock.set_up(br.index, true)?;
        Ok(ns)
    }

    /// A host namespace `role` whose parent `parent` is a veth into the
    /// switch's `br0`, up, with the host's own `address` on it.
    pub fn host(
        &mut self,
        switch: &Netns,
        role: &str,
        parent: &str,
        address: Option<IpNet>,
    ) -> Result<Host> {
        let ns = self.netns(role)?;
        let port = format!("p-{role}");
        let mut sw = RouteSocket::open_in(switch)?;
        sw.create_veth(&port, parent, Some(&ns))?;
        let port_link = sw.require_link(&port, "switch")?;
        let br = sw.require_link("br0", "switch")?;
        sw.set_master(port_link.index, Some(br.index))?;
        sw.set_up(port_link.index, true)?;
        let mut host = RouteSocket::open_in(&ns)?;
        let p = host.require_link(parent, role)?;
        if let Some(a) = address {
            host.add_address(p.index, a)?;
        }
        host.set_up(p.index, true)?;
        // The kernel activates a veth's queue only when its link watcher
        // handles the carrier change, which can lag by a second; frames sent
        // before are dropped (a lost first ARP costs a one-second retry).
        wait_oper_up(&mut host, p.index)?;
        wait_oper_up(&mut sw, port_link.index)?;
        Ok(Host {
            netns: ns,
            netns_name: self.name_of(role),
            parent: parent.to_string(),
            switch_port: port,
        })
    }
}

/// Waits (at most 3 s) until the kernel reports `index` operationally up.
pub fn wait_oper_up(sock: &mut RouteSocket, index: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if sock.link_by_index(index)?.is_some_and(|l| l.oper_state == "up") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

impl Drop for World {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        for name in self.created.iter().rev() {
            if let Err(e) = netns::delete_named(name) {
                eprintln!("nicslice: could not delete namespace {name}: {e}");
            }
        }
    }
}
