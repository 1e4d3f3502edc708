//! `nicslice network create|ls|inspect|rm`.

use std::collections::BTreeMap;
use std::net::IpAddr;

use anyhow::{Context, bail};
use nicslice_engine::{ParentRequest, internal_parent_name, vlan_name};
use nicslice_model::{
    Driver, EtcdTls, FleetSpec, IfName, IpvlanMode, LinkMode, NetworkName, NetworkSpec, ProbeSpec,
    SubnetSpec,
};

use super::Globals;
use crate::args::{NetworkCommand, NetworkCreateArgs};
use crate::output;

pub fn run(g: &Globals, cmd: NetworkCommand) -> anyhow::Result<()> {
    let mut engine = g.engine()?;
    match cmd {
        NetworkCommand::Create(args) => {
            let host_access = args.host_access;
            let (spec, parent) = spec_from(*args)?;
            let name = spec.name.to_string();
            let view = engine.create_network(spec, parent)?;
            if host_access
                && let Err(e) = engine.add_shim(nicslice_engine::ShimRequest {
                    network: name.clone(),
                    name: None,
                    ips: Vec::new(),
                    route_range: false,
                })
            {
                // One step: without its shim the network is not what was asked.
                if let Err(rm) = engine.remove_network(&name, false) {
                    return Err(e)
                        .context(format!("removing network {name} again also failed: {rm}"));
                }
                return Err(e.into());
            }
            if g.json {
                return output::json(&view);
            }
            println!(
                "created network {} on {} ({} {})",
                view.name, view.parent, view.driver, view.mode
            );
        }
        NetworkCommand::Ls => {
            let nets = engine.list_networks()?;
            if g.json {
                return output::json(&nets);
            }
            let rows: Vec<Vec<String>> = nets
                .iter()
                .map(|n| {
                    vec![
                        n.name.clone(),
                        n.driver.clone(),
                        n.mode.clone(),
                        n.parent.clone(),
                        if n.ipam.starts_with("dhcp") {
                            format!("({})", n.ipam)
                        } else {
                            n.subnets
                                .iter()
                                .map(|s| s.subnet.to_string())
                                .collect::<Vec<_>>()
                                .join(",")
                        },
                        n.endpoints.to_string(),
                    ]
                })
                .collect();
            output::table(&["NAME", "DRIVER", "MODE", "PARENT", "SUBNETS", "ENDPOINTS"], &rows);
        }
        NetworkCommand::Inspect { name } => {
            let detail = engine.inspect_network(&name)?;
            if g.json {
                return output::json(&detail);
            }
            let n = &detail.network;
            println!("network {} ({} {} on {})", n.name, n.driver, n.mode, n.parent);
            if !n.flags.is_empty() {
                println!("  flags: {}", n.flags.join(","));
            }
            if n.ipam.starts_with("dhcp") {
                println!("  addresses from {} (each endpoint its own client identifier)", n.ipam);
            }
            for s in &n.subnets {
                let range = s.ip_range.map(|r| format!(", range {r}")).unwrap_or_default();
                println!("  subnet {} gateway {}{range}", s.subnet, s.gateway);
            }
            let p = &detail.parent_state;
            if p.exists {
                println!(
                    "  parent {}: {}{}, mtu {}, promiscuity {}",
                    n.parent,
                    if p.up { "up" } else { "DOWN" },
                    if p.lower_up { "" } else { " (no carrier: children are down too)" },
                    p.mtu,
                    p.promiscuity
                );
            } else {
                println!("  parent {}: MISSING (its children were deleted with it)", n.parent);
            }
            if let Some(p) = &probe_line(&detail) {
                println!("  {p}");
            }
            for e in &detail.endpoint_list {
                println!("  endpoint {} in {}: {}", e.ifname, e.netns, addresses(&e.addresses));
            }
            match &detail.fleet {
                Some(Ok(fleet)) => print_fleet(fleet),
                Some(Err(e)) => println!("  fleet pool: cannot read it from etcd ({e})"),
                None => {}
            }
            for q in &detail.quarantined {
                let by =
                    q.answered_by.map_or("DAD failed".to_string(), |m| format!("answered by {m}"));
                println!("  quarantined {}: {by}, {}", q.ip, ago(q.answered_at));
            }
        }
        NetworkCommand::Rm { name, force } => {
            let detached = engine.remove_network(&name, force)?;
            if g.json {
                return output::json(&serde_json::json!({ "removed": name, "detached": detached }));
            }
            for e in &detached {
                println!("detached {} in {}", e.ifname, e.netns);
            }
            println!("removed network {name}");
        }
    }
    Ok(())
}

/// The fleet pool part of `network inspect`.
fn print_fleet(f: &nicslice_store::fleet::FleetView) {
    println!(
        "  fleet pool on etcd {}: blocks of {}, TTL {} s, cool-down {} s",
        f.etcd.join(","),
        f.block_size,
        f.ttl_s,
        f.cooldown_s
    );
    if let Some(host) = &f.this_host {
        let lease = match f.lease_left_ms {
            0 => "no live lease (renewed at the next attach)".to_string(),
            ms => format!("lease good for {:.1} s more", ms as f64 / 1000.0),
        };
        println!("  this host: {host}, {lease}");
    }
    for b in &f.blocks {
        println!("  block {}: held by {}, for {} s", b.first, b.holder, b.age_s);
    }
    for h in &f.hosts {
        let list: Vec<String> = h.in_use.iter().map(ToString::to_string).collect();
        println!(
            "  host {}: {} in use{}{}, {} spare",
            h.host,
            h.in_use.len(),
            if list.is_empty() { "" } else { ": " },
            list.join(", "),
            h.spare
        );
        if !h.alive {
            let since =
                h.gone_for_s.map_or("no lease".to_string(), |s| format!("no lease for {s} s"));
            println!("    {since}: its addresses return after the cool-down unless they answer");
        }
        for a in &h.answered {
            println!("    {} answered by {} {} s ago: held", a.ip, a.mac, a.age_s);
        }
    }
}

/// The probing line of `network inspect`.
fn probe_line(detail: &nicslice_engine::NetworkDetail) -> Option<String> {
    detail.spec.probe.map(|p| {
        format!("probes for conflicts: {} ms, quarantine {} s", p.timeout_ms, p.cooldown_s)
    })
}

/// "N s ago" for a time in seconds since the Unix epoch.
fn ago(at: i64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    format!("{} s ago", now.saturating_sub(at).max(0))
}

pub fn addresses(a: &[ipnet::IpNet]) -> String {
    if a.is_empty() {
        "no address".to_string()
    } else {
        a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
    }
}

/// A TLS file's path as the record keeps it: absolute, since every later
/// command reads the file from wherever it runs (whether it can be read is
/// found when the network joins etcd, in the same create).
fn tls_file(option: &str, path: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    if path.to_str().is_none() {
        bail!("{option} {}: the path is not UTF-8", path.display());
    }
    std::path::absolute(path).with_context(|| format!("{option} {}", path.display()))
}

fn spec_from(a: NetworkCreateArgs) -> anyhow::Result<(NetworkSpec, ParentRequest)> {
    let driver: Driver = a.driver.parse()?;
    let mode: LinkMode = match &a.mode {
        Some(m) => m.parse()?,
        None => driver.default_mode(),
    };
    let name = NetworkName::new(&a.name)?;
    let given = a.parent.as_deref().map(IfName::new).transpose().context("--parent")?;
    let (parent, request) = match (given, a.vlan, a.internal) {
        (Some(lower), Some(id), _) => (vlan_name(&lower, id)?, ParentRequest::Vlan { lower, id }),
        (Some(p), None, false) => (p, ParentRequest::Existing),
        (Some(p), None, true) => (p, ParentRequest::Dummy),
        (None, _, _) => (internal_parent_name(name.as_str()), ParentRequest::Dummy),
    };
    let mut spec = NetworkSpec::new(name, driver, parent, mode);
    for f in &a.flags {
        if driver.is_ipvlan() {
            spec.ipvlan_flag = f.parse()?;
        } else {
            spec.flags.set_by_name(f)?;
        }
    }
    spec.mtu = a.mtu;
    spec.bcqueuelen = a.bcqueuelen;
    spec.bclim = a.bclim;
    spec.promisc = a.promisc;
    // `--ipam dhcp --ipam dhcp6` and `--ipam dhcp,dhcp6` both arrive as a
    // list; the model reads it back joined.
    spec.ipam = a.ipam.join(",").parse()?;
    let tls = EtcdTls {
        ca: a.etcd_ca.as_deref().map(|p| tls_file("--etcd-ca", p)).transpose()?,
        cert: a.etcd_cert.as_deref().map(|p| tls_file("--etcd-cert", p)).transpose()?,
        key: a.etcd_key.as_deref().map(|p| tls_file("--etcd-key", p)).transpose()?,
    };
    if a.etcd.is_empty() && !tls.is_plain() {
        bail!("--etcd-ca/--etcd-cert/--etcd-key apply to --ipam etcd with https:// --etcd URLs");
    }
    if !a.etcd.is_empty() {
        spec.fleet = Some(FleetSpec {
            endpoints: a.etcd.iter().map(|u| u.trim().to_string()).collect(),
            block_size: a.etcd_block.unwrap_or(FleetSpec::DEFAULT_BLOCK_SIZE),
            ttl_s: a.etcd_ttl.unwrap_or(FleetSpec::DEFAULT_TTL_S),
            tls,
            cooldown_s: a.etcd_cooldown.unwrap_or(FleetSpec::DEFAULT_COOLDOWN_S),
        });
    }
    spec.probe = a.probe_conflicts.map(|timeout_ms| ProbeSpec {
        timeout_ms,
        cooldown_s: a.probe_cooldown.unwrap_or(ProbeSpec::DEFAULT_COOLDOWN_S),
    });
    let noarp = matches!(spec.mode, LinkMode::Ipvlan(IpvlanMode::L3 | IpvlanMode::L3s));
    if spec.probe.is_some() && noarp && a.subnets.iter().any(|s| s.addr().is_ipv6()) {
        bail!(
            "--probe-conflicts: ipvlan {} children are NOARP and the kernel runs no duplicate address detection on them, so IPv6 addresses cannot be probed; use --mode l2, or drop --probe-conflicts",
            spec.mode
        );
    }
    if a.gateways.len() > a.subnets.len() {
        bail!(
            "{} --gateway for {} --subnet: give one gateway per subnet, in the same order",
            a.gateways.len(),
            a.subnets.len()
        );
    }
    spec.subnets = a
        .subnets
        .iter()
        .map(|s| SubnetSpec { link_local: a.link_local, ..SubnetSpec::new(*s) })
        .collect();
    for (subnet, gw) in spec.subnets.iter_mut().zip(&a.gateways) {
        subnet.gateway = Some(*gw);
    }
    for range in &a.ip_ranges {
        let subnet = spec
            .subnets
            .iter_mut()
            .find(|s| s.subnet.contains(range))
            .with_context(|| format!("--ip-range {range} is inside no --subnet"))?;
        if subnet.ip_range.is_some() {
            bail!("two --ip-range values fall in subnet {}; give one per subnet", subnet.subnet);
        }
        subnet.ip_range = Some(*range);
    }
    for aux in &a.aux_addresses {
        let (name, ip) = aux
            .split_once('=')
            .with_context(|| format!("--aux-address {aux}: expected NAME=IP"))?;
        let ip: IpAddr = ip
            .parse()
            .with_context(|| format!("--aux-address {aux}: {ip} is not an IP address"))?;
        let subnet = spec
            .subnets
            .iter_mut()
            .find(|s| s.subnet.contains(&ip))
            .with_context(|| format!("--aux-address {aux}: {ip} is inside no --subnet"))?;
        let map: &mut BTreeMap<String, IpAddr> = &mut subnet.aux_addresses;
        map.insert(name.to_string(), ip);
    }
    Ok((spec, request))
}
