//! `nicslice endpoint ls|macaddr|check`.

use anyhow::Context;
use nicslice_kernel::SourceMacOp;
use nicslice_model::{IfName, MacAddr};

use super::{Globals, target};
use crate::args::EndpointCommand;
use crate::commands::network::addresses;
use crate::output;

pub fn run(g: &Globals, cmd: EndpointCommand) -> anyhow::Result<()> {
    let mut engine = g.engine()?;
    match cmd {
        EndpointCommand::Ls { network } => {
            let eps = engine.endpoints(network.as_deref())?;
            if g.json {
                return output::json(&eps);
            }
            let rows: Vec<Vec<String>> = eps
                .iter()
                .map(|e| {
                    vec![
                        e.network.clone(),
                        e.netns.clone(),
                        e.ifname.clone(),
                        e.mac.map(|m| m.to_string()).unwrap_or_default(),
                        addresses(&e.addresses),
                        e.gateways.iter().map(|g| g.to_string()).collect::<Vec<_>>().join(","),
                        e.state.to_string(),
                        leases(e),
                    ]
                })
                .collect();
            output::table(
                &["NETWORK", "NETNS", "IFNAME", "MAC", "ADDRESSES", "GATEWAY", "STATE", "LEASE"],
                &rows,
            );
        }
        EndpointCommand::Check { network } => {
            let health = engine.check_endpoints(network.as_deref())?;
            let bad = health.iter().filter(|h| h.problem.is_some()).count();
            if g.json {
                output::json(&health)?;
            } else {
                let rows: Vec<Vec<String>> = health
                    .iter()
                    .map(|h| {
                        let e = &h.endpoint;
                        let state = h.problem.clone().unwrap_or_else(|| "ok".into());
                        vec![e.network.clone(), e.netns.clone(), e.ifname.clone(), state]
                    })
                    .collect();
                output::table(&["NETWORK", "NETNS", "IFNAME", "STATE"], &rows);
            }
            if bad > 0 {
                anyhow::bail!("{bad} of {} endpoint(s) differ from what was made", health.len());
            }
        }
        EndpointCommand::Macaddr(a) => {
            let op = match a.op.as_str() {
                "add" => SourceMacOp::Add,
                "del" => SourceMacOp::Del,
                "set" => SourceMacOp::Set,
                _ => SourceMacOp::Flush,
            };
            if op != SourceMacOp::Flush && a.macs.is_empty() {
                anyhow::bail!("macaddr {} needs at least one MAC address", a.op);
            }
            let macs: Vec<MacAddr> = a
                .macs
                .iter()
                .map(|m| m.parse().and_then(MacAddr::ensure_listable_source))
                .collect::<Result<_, _>>()?;
            let ifname = IfName::new(&a.ifname).context("--ifname")?;
            let view =
                engine.change_source_macs(&a.network, &target(&a.target)?, &ifname, op, &macs)?;
            if g.json {
                return output::json(&view);
            }
            let list: Vec<String> = view.source_macs.iter().map(|m| m.to_string()).collect();
            println!(
                "{} in {} now accepts frames from: {}",
                view.ifname,
                view.netns,
                if list.is_empty() { "(no MAC)".into() } else { list.join(", ") }
            );
        }
    }
    Ok(())
}

/// An endpoint's DHCP leases in one cell, each family's (a dual-stack
/// endpoint has two): its server, length and what is left of it; then
/// those the agent lost, and why, and when it asks again.
fn leases(e: &nicslice_engine::EndpointView) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let left = |at: i64| format!("{}s", (at - now).max(0));
    let held = [("dhcp", &e.dhcp), ("dhcp6", &e.dhcp6)].into_iter().filter_map(|(name, lease)| {
        let lease = lease.as_ref()?;
        Some(format!(
            "{name} {} {}s (renew in {}, expires in {})",
            lease.server,
            lease.lease_secs,
            left(lease.renew_at),
            left(lease.expires_at)
        ))
    });
    let asking = e
        .dhcp_retry
        .iter()
        .map(|r| format!("DHCPv{} asked for again in {}", r.family, left(r.next_at)));
    let cells: Vec<String> = held.chain(e.dhcp_lost.iter().cloned()).chain(asking).collect();
    if cells.is_empty() { "-".to_string() } else { cells.join("; ") }
}
