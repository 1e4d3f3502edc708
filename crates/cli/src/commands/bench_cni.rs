//! `nicslice bench-cni`: the CNI benchmark of nicslice-cni, run on this very
//! binary (the one that would be installed), printed as a table or JSON.

use crate::args::BenchCniArgs;

pub fn run(args: &BenchCniArgs, json: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let opts = nicslice_cni::bench::Options {
        runs: args.runs,
        reference_dir: args.reference.clone(),
        nicslice: exe,
        leases: args.leases,
        netavark: args.netavark.clone(),
    };
    let report = nicslice_cni::bench::run(&opts)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
