//! Dispatch: one file per command; each parses its arguments into engine
//! requests, calls the engine and prints.

mod apply;
mod attach;
mod check;
mod cni_leases;
mod dhcp_agent;
mod doctor;
mod endpoint;
mod events;
mod explain;
mod install_cni;
mod install_systemd;
mod lab;
mod lab_report;
mod network;
mod shim;
mod toml_file;

use std::path::PathBuf;

use nicslice_engine::{Engine, Faults};
use nicslice_kernel::{Netns, NetnsTarget};
use nicslice_store::DEFAULT_STATE_PATH;

use crate::args::{Cli, Command, TargetArgs};

/// Global options every command that touches state needs.
pub struct Globals {
    pub state: PathBuf,
    pub host_netns: Option<String>,
    pub json: bool,
}

impl Globals {
    pub fn engine(&self) -> anyhow::Result<Engine> {
        let host = match &self.host_netns {
            Some(name) => NetnsTarget::parse_user(name).open()?,
            None => Netns::current()?,
        };
        Ok(Engine::open(&self.state, host, Faults::from_env()?)?)
    }
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    let globals = Globals {
        state: cli.global.state.unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_PATH)),
        host_netns: cli.global.host_netns,
        json: cli.global.json,
    };
    match cli.command {
        Command::Check => check::run(globals.json),
        Command::Lab(args) => lab::run(args, globals.json),
        Command::Explain(args) => explain::run(args, &globals),
        Command::Network(cmd) => network::run(&globals, cmd),
        Command::Attach(args) => attach::attach(&globals, args),
        Command::Detach(args) => attach::detach(&globals, args),
        Command::Endpoint(cmd) => endpoint::run(&globals, cmd),
        Command::Shim(cmd) => shim::run(&globals, cmd),
        Command::Doctor { network, fix, wire } => {
            doctor::run(&globals, network.as_deref(), fix, wire)
        }
        Command::Restore => doctor::restore(&globals),
        Command::Apply(args) => apply::run(&globals, &args),
        Command::Events { fix, idle_exit } => events::run(&globals, fix, idle_exit),
        Command::InstallSystemd { dir } => install_systemd::run(&dir, &globals),
        Command::InstallCni(args) => install_cni::run(&args),
        Command::CniLeases(cmd) => cni_leases::run(cmd, globals.json),
        Command::DhcpAgent(args) => dhcp_agent::run(&globals, &args),
    }
}

/// The namespace a command targets.
pub fn target(args: &TargetArgs) -> anyhow::Result<NetnsTarget> {
    match (&args.netns, args.pid) {
        (Some(ns), None) => Ok(NetnsTarget::parse_user(ns)),
        (None, Some(pid)) => Ok(NetnsTarget::Pid(pid)),
        _ => anyhow::bail!("give exactly one of --netns or --pid"),
    }
}
