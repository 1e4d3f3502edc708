//! `nicslice shim add|rm|ls`: host access to a network's endpoints.

use anyhow::Context;
use nicslice_engine::{ShimRequest, ShimView};
use nicslice_model::IfName;

use super::Globals;
use crate::args::ShimCommand;
use crate::output;

fn join<T: ToString>(ips: &[T]) -> String {
    ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

fn print(view: &ShimView, verb: &str) {
    let via = match (view.addresses.is_empty(), view.sources.is_empty()) {
        (false, _) => format!("with address {}", join(&view.addresses)),
        (true, false) => format!("borrowing the host's {}", join(&view.sources)),
        (true, true) => String::new(),
    };
    let ranges = match view.ranges.is_empty() {
        true => String::new(),
        false => format!("range {} and ", join(&view.ranges)),
    };
    println!(
        "{verb} shim {} for network {} {via}; {ranges}{} endpoint address(es) routed through it",
        view.name,
        view.network,
        view.routes.len()
    );
}

pub fn run(g: &Globals, cmd: ShimCommand) -> anyhow::Result<()> {
    let mut engine = g.engine()?;
    match cmd {
        ShimCommand::Add { network, name, ip, route_range } => {
            let name = name.map(|n| IfName::new(&n)).transpose().context("--name")?;
            let view = engine.add_shim(ShimRequest { network, name, ips: ip, route_range })?;
            if g.json {
                return output::json(&view);
            }
            print(&view, "made");
        }
        ShimCommand::Rm { network } => {
            let view = engine.remove_shim(&network)?;
            if g.json {
                return output::json(&view);
            }
            print(&view, "removed");
        }
        ShimCommand::Ls => {
            let shims = engine.list_shims()?;
            if g.json {
                return output::json(&shims);
            }
            let rows: Vec<Vec<String>> = shims
                .iter()
                .map(|s| {
                    vec![
                        s.network.clone(),
                        s.name.clone(),
                        join(&s.addresses),
                        join(&s.sources),
                        [join(&s.ranges), join(&s.routes)]
                            .into_iter()
                            .filter(|j| !j.is_empty())
                            .collect::<Vec<_>>()
                            .join(","),
                    ]
                })
                .collect();
            output::table(&["NETWORK", "SHIM", "ADDRESSES", "SOURCES", "ROUTES"], &rows);
        }
    }
    Ok(())
}
