//! `nicslice attach` and `nicslice detach`.

use anyhow::Context;
use nicslice_engine::{AttachRequest, DetachRequest, EngineError};
use nicslice_model::{IfName, MacAddr};

use super::{Globals, target};
use crate::args::{AttachArgs, DetachArgs};
use crate::commands::network::addresses;
use crate::output;

pub fn attach(g: &Globals, a: AttachArgs) -> anyhow::Result<()> {
    let req = AttachRequest {
        network: a.network,
        netns: target(&a.target)?,
        ifname: IfName::new(&a.ifname).context("--ifname")?,
        ips: a.ips,
        mac: a.mac.as_deref().map(str::parse::<MacAddr>).transpose().context("--mac")?,
        source_macs: a
            .source_macs
            .iter()
            .map(|m| m.parse())
            .collect::<Result<_, _>>()
            .context("--source-mac")?,
        default_route: !a.no_default_route,
        routes: a
            .routes
            .iter()
            .map(|r| r.parse().map_err(|e: String| anyhow::anyhow!(e)))
            .collect::<anyhow::Result<_>>()?,
        dhcp: nicslice_engine::dhcp::DhcpRequest {
            client_id: a.client_id,
            timeout: dhcp_timeout(a.dhcp_timeout)?,
        },
    };
    let view = match g.engine()?.attach(req) {
        Ok(view) => view,
        // Undone: say so, and end as a shell expects of a stopped command.
        Err(EngineError::Interrupted(signal)) => {
            eprintln!("nicslice: {}", EngineError::Interrupted(signal));
            std::process::exit(128 + signal);
        }
        Err(e) => return Err(e.into()),
    };
    if (view.dhcp.is_some() || view.dhcp6.is_some()) && !a.no_agent {
        super::dhcp_agent::ensure_running(g);
    }
    if g.json {
        return output::json(&view);
    }
    let mac = view.mac.map(|m| m.to_string()).unwrap_or_default();
    println!(
        "attached {} in {} to {}: {} mac {mac}",
        view.ifname,
        view.netns,
        view.network,
        addresses(&view.addresses)
    );
    for gw in &view.gateways {
        println!("  default route via {gw}");
    }
    for route in &view.routes {
        println!("  route {route}");
    }
    if let Some(tap) = &view.tap_device {
        println!("  tap device {tap}");
    }
    for (name, lease) in [("DHCP", &view.dhcp), ("DHCPv6", &view.dhcp6)] {
        if let Some(lease) = lease {
            println!("  {name} lease from {} for {} s", lease.server, lease.lease_secs);
        }
    }
    Ok(())
}

fn dhcp_timeout(seconds: f64) -> anyhow::Result<std::time::Duration> {
    if !(seconds > 0.0 && seconds <= 3600.0) {
        anyhow::bail!("--dhcp-timeout {seconds}: give a number of seconds above 0, at most 3600");
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

pub fn detach(g: &Globals, a: DetachArgs) -> anyhow::Result<()> {
    let req = DetachRequest {
        network: a.network,
        netns: target(&a.target)?,
        ifname: IfName::new(&a.ifname).context("--ifname")?,
    };
    let view = g.engine()?.detach(req)?;
    if g.json {
        return output::json(&view);
    }
    println!(
        "detached {} in {} from {}; released {}",
        view.ifname,
        view.netns,
        view.network,
        addresses(&view.addresses)
    );
    Ok(())
}
