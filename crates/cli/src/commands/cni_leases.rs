//! `nicslice cni-leases recover FILE`: the explicit recovery of an
//! unreadable CNI lease database (the store does the work,
//! `nicslice_store::cni_ipam::recover`); this file prints what it did and,
//! honestly, what it could not do; and `cni-leases quarantined FILE
//! NETWORK`, the addresses conflict probing held out of a CNI network.

use serde::Serialize;

use crate::args::CniLeasesCommand;
use crate::output;

#[derive(Serialize)]
struct Report {
    database: String,
    set_aside: String,
    /// What could not be done (`NOT_REBUILT`).
    note: &'static str,
}

/// Why no lease is rebuilt, and what the user should do about it.
const NOT_REBUILT: &str = "No lease was rebuilt: a CNI lease is keyed by network name, container \
ID and interface name, which neither the damaged file (it cannot be read safely) nor the links in \
namespaces tell. Containers attached before keep their addresses, but the new database does not \
know them: re-attach them (CNI DEL and ADD, or restart them) before new containers are added, or \
a new ADD may hand out one of their addresses.";

pub fn run(cmd: CniLeasesCommand, json: bool) -> anyhow::Result<()> {
    match cmd {
        CniLeasesCommand::Recover { file, force } => {
            let done = nicslice_store::cni_ipam::recover(&file, force)?;
            let report = Report {
                database: file.display().to_string(),
                set_aside: done.set_aside.display().to_string(),
                note: NOT_REBUILT,
            };
            if json {
                return output::json(&report);
            }
            println!("set aside {} as {}", report.database, report.set_aside);
            println!("started a new, empty lease database at {}", report.database);
            println!("{}", report.note);
            Ok(())
        }
        CniLeasesCommand::Quarantined { file, network } => quarantined(&file, &network, json),
    }
}

/// `cni-leases quarantined FILE NETWORK` (issue 14).
fn quarantined(file: &std::path::Path, network: &str, json: bool) -> anyhow::Result<()> {
    let mut store = nicslice_store::cni_ipam::CniIpamStore::open(file)?;
    // A write transaction only reads here, and is dropped (abandoned).
    let list = store.write()?.quarantined(network)?;
    if json {
        return output::json(&list);
    }
    for q in &list {
        let by = q.answered_by.map_or("DAD failed".to_string(), |m| format!("answered by {m}"));
        println!("quarantined {}: {by}, at {}", q.ip, q.answered_at);
    }
    Ok(())
}
