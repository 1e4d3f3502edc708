//! What this kernel and this process can do: for each link kind and macvlan
//! mode nicslice uses, try to create one in a throwaway namespace (nothing is
//! mounted and nothing outlives the call), and read the process's capabilities.

use nicslice_kernel::ipvlan::IpvlanLinkRequest;
use nicslice_kernel::{KernelError, MacvlanLinkRequest, RouteSocket, SimpleKind, netns};
use nicslice_model::{Driver, IpvlanFlag, IpvlanMode, MacvlanMode};
use serde::Serialize;

/// One line of `nicslice check`.
#[derive(Debug, Clone, Serialize)]
pub struct Capability {
    /// What was tried, e.g. "macvlan bridge", "ipvlan", "802.1Q".
    pub feature: String,
    pub available: bool,
    /// Why not, in the kernel's words, when unavailable.
    pub detail: Option<String>,
}

/// The privileges nicslice needs, as the process has them now.
#[derive(Debug, Clone, Serialize)]
pub struct Privileges {
    pub cap_net_admin: bool,
    pub cap_sys_admin: bool,
    pub cap_net_raw: bool,
}

impl Privileges {
    pub fn read() -> Privileges {
        let caps = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(0);
        let has = |bit: u32| caps & (1u64 << bit) != 0;
        // Bit numbers from linux/capability.h.
        Privileges { cap_net_admin: has(12), cap_net_raw: has(13), cap_sys_admin: has(21) }
    }

    pub fn sufficient(&self) -> bool {
        self.cap_net_admin && self.cap_sys_admin && self.cap_net_raw
    }
}

fn outcome(feature: &str, result: Result<(), KernelError>) -> Capability {
    match result {
        Ok(()) => Capability { feature: feature.to_string(), available: true, detail: None },
        Err(e) => {
            let detail = match e.errno() {
                Some(libc::EOPNOTSUPP) => {
                    "the kernel has no such link kind (module missing)".to_string()
                }
                _ => e.to_string(),
            };
            Capability { feature: feature.to_string(), available: false, detail: Some(detail) }
        }
    }
}

/// Tries every link kind and macvlan mode in a fresh namespace.
pub fn probe_kernel() -> Result<Vec<Capability>, KernelError> {
    let ns = netns::create_anonymous()?;
    let mut sock = RouteSocket::open_in(&ns)?;
    let mut out = Vec::new();
    // Each experiment gets its own veth parent so passthru (one child only)
    // and ipvlan (which takes the parent's rx handler) cannot disturb others.
    let mut n = 0;
    let mut fresh_parent = |sock: &mut RouteSocket| -> Result<u32, KernelError> {
        n += 1;
        sock.create_veth(&format!("par{n}"), &format!("peer{n}"), None)?;
        Ok(sock.require_link(&format!("par{n}"), "probe netns")?.index)
    };
    out.push(outcome("veth", fresh_parent(&mut sock).map(|_| ())));
    out.push(outcome("bridge", sock.create_simple(SimpleKind::Bridge, "br0", None)));
    out.push(outcome("dummy", sock.create_simple(SimpleKind::Dummy, "dummy0", None)));
    for driver in [Driver::Macvlan, Driver::Macvtap] {
        for mode in MacvlanMode::ALL {
            let result = fresh_parent(&mut sock).and_then(|parent| {
                let name = "child".parse().map_err(|_| KernelError::Protocol {
                    op: "probe".into(),
                    detail: "bad name".into(),
                })?;
                let req = MacvlanLinkRequest::new(driver, name, parent, mode);
                sock.create_macvlan(&req, None)?;
                sock.delete_link_by_name("child").map(|_| ())
            });
            out.push(outcome(&format!("{driver} {mode}"), result));
        }
    }
    let kinds = [
        ("ipvlan", SimpleKind::Ipvlan),
        ("ipvtap", SimpleKind::Ipvtap),
        ("802.1Q", SimpleKind::Vlan(10)),
    ];
    for (i, (name, kind)) in kinds.into_iter().enumerate() {
        let result = fresh_parent(&mut sock)
            .and_then(|parent| sock.create_simple(kind, &format!("k{i}"), Some(parent)));
        out.push(outcome(name, result));
    }
    for mode in [IpvlanMode::L3, IpvlanMode::L3s] {
        let result = fresh_parent(&mut sock).and_then(|parent| {
            let req = IpvlanLinkRequest {
                tap: false,
                name: "child".parse().map_err(|_| KernelError::Protocol {
                    op: "probe".into(),
                    detail: "bad name".into(),
                })?,
                parent_index: parent,
                mode,
                flag: IpvlanFlag::Bridge,
                mtu: None,
            };
            sock.create_ipvlan(&req, None)?;
            sock.delete_link_by_name("child").map(|_| ())
        });
        out.push(outcome(&format!("ipvlan {mode}"), result));
    }
    // Dropping `ns` (the last handle) destroys the namespace and everything in it.
    drop(sock);
    drop(ns);
    Ok(out)
}
