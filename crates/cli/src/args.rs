//! The command line: every command, option and help text, as clap derive types.
//! Parsing only; `commands/` does the work.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

#[derive(Debug, Parser)]
#[command(
    name = "nicslice",
    version,
    about = "Split one NIC into many with macvlan and ipvlan: networks, endpoints in namespaces, IPAM",
    long_about = "nicslice creates macvlan, macvtap, ipvlan and ipvtap children of a parent interface, places them in \
network namespaces (iproute2 names, namespace files or a container's pid), gives them addresses from \
its own IPAM and a default route, and undoes every step if any fails.\n\n\
Run it in the namespace that holds the parent (or point --host-netns at it). State lives in \
/var/lib/nicslice/state.db unless --state or NICSLICE_STATE says otherwise.",
    after_help = "Examples:\n  \
nicslice check\n  \
nicslice lab\n  \
nicslice network create lan --parent ens160 --mode bridge --subnet 192.168.0.0/16 \\\n      \
--gateway 192.168.1.1 --ip-range 192.168.179.0/24\n  \
nicslice attach lan --netns ns1\n  \
nicslice attach lan --netns ns2 --ip 192.168.179.13\n  \
nicslice network create home --parent ens160 --ipam dhcp,dhcp6\n  \
nicslice attach home --netns ns3\n  \
nicslice endpoint ls lan --json\n  \
nicslice detach lan --netns ns1\n  \
nicslice network rm lan"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// The options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// State database (default /var/lib/nicslice/state.db).
    #[arg(long, global = true, env = "NICSLICE_STATE", value_name = "PATH")]
    pub state: Option<PathBuf>,

    /// The namespace holding the parents: an iproute2 name or a namespace file
    /// (default: the namespace nicslice runs in).
    #[arg(long, global = true, value_name = "NETNS", value_parser = netns_arg)]
    pub host_netns: Option<String>,

    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// More detail on stderr (-v: each step, -vv: everything).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report which link kinds and modes this kernel supports, and whether you
    /// have the privileges nicslice needs (tries each in a throwaway namespace).
    Check,
    /// Prove who reaches whom: build the seeds' experiments for every mode in
    /// private namespaces on this kernel, probe every pair, and compare with
    /// the model's predictions (exit status 0 when all match).
    Lab(LabArgs),
    /// Predict who reaches whom, and why, for a topology file, a lab scenario or
    /// (with no argument) the live state; each blocked pair comes with its fix.
    Explain(ExplainArgs),
    /// Create, list, inspect and remove networks.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Give a namespace an interface on a network: link, address, default route.
    Attach(AttachArgs),
    /// Remove a namespace's interface from a network and free its addresses.
    Detach(DetachArgs),
    /// List endpoints or change a source-mode endpoint's MAC list.
    #[command(subcommand)]
    Endpoint(EndpointCommand),
    /// Compare what nicslice made with the kernel and list every difference
    /// with its fix: parents missing, down, without carrier, wireless or
    /// enslaved; promiscuous mode off; shims missing; endpoints whose
    /// namespace is gone, whose link is missing or changed. Exits 1 when
    /// anything is left to fix.
    Doctor {
        /// Only this network.
        network: Option<String>,
        /// Repair what is safe to repair: parents nicslice owns, promiscuous
        /// mode, shims, endpoint links missing from living namespaces, and
        /// the leases of endpoints whose namespace is gone.
        #[arg(long)]
        fix: bool,
        /// Also ask the wire (about a second per network, frames sent to the
        /// segment): endpoint addresses another MAC answers for, frames from
        /// new MACs dropped (hypervisor forged transmits), a NIC's MAC filter
        /// overflowed into promiscuous mode.
        #[arg(long)]
        wire: bool,
    },
    /// Print, as they happen, the kernel's link and address events that
    /// concern nicslice's networks: a parent down, up, without carrier,
    /// deleted or recreated, or out of the promiscuous mode a network asked
    /// for; a shim removed; an endpoint's link deleted, its address removed
    /// or another added by hand, or its namespace ended; each with the
    /// networks and endpoints it affects. Runs in the foreground (or as the
    /// service `install-systemd` writes) and sleeps in the kernel between
    /// events.
    Events {
        /// Repair as events arrive what `doctor --fix` repairs: a parent
        /// recreated gets its children back; promiscuous mode is turned on
        /// again; a removed shim or endpoint link is made again; a gone
        /// namespace's addresses are released.
        #[arg(long)]
        fix: bool,
        /// Stop after this many seconds without an event (default: never).
        #[arg(long, value_name = "SECONDS")]
        idle_exit: Option<u64>,
    },
    /// After a reboot: make again what the record says must exist without any
    /// container (parents nicslice owns, promiscuous mode, shims, endpoints in
    /// namespaces that exist again) and release the leases of endpoints whose
    /// namespace did not come back. `doctor --fix`, quiet; idempotent. The
    /// unit `install-systemd` writes runs it at boot.
    Restore,
    /// Make networks, shims and endpoints what a TOML file declares: print the
    /// plan (one line per step: create, modify, remove or keep, and why), then
    /// make every change, all or nothing.
    #[command(
        long_about = "Make networks, shims and endpoints what a TOML file declares. apply compares \
the file with the record (state.db) and the kernel, prints the plan, one line per step (create, \
modify, remove or keep, and why), and makes the changes, all or nothing: if one fails, those \
made before it are undone. Applying the same file again changes nothing.\n\n\
A [[network]] takes the options of `network create` (name, driver, parent, vlan, internal, \
mode, flags, mtu, bcqueuelen, bclim, promisc, host_access, probe_conflicts, probe_cooldown, \
ipam: one source or a list, and for ipam = \"etcd\" etcd (the client URLs), etcd_block, etcd_ttl, \
etcd_cooldown, etcd_ca, etcd_cert, etcd_key, relative paths taken from the file's directory) and \
[[network.subnet]] tables (subnet, gateway, ip_range, aux_addresses, link_local); \
a [[shim]] those of `shim add` (network, name, ips, route_range); an [[endpoint]] those of `attach` \
(network, netns, ifname, ips, mac, source_macs, default_route, routes) and create = true to \
have nicslice make the named namespace. Unknown keys are refused.\n\n\
A network recorded with other settings is changed in place where no link carries the setting \
(promisc, probe_conflicts); otherwise apply refuses, naming the setting, unless --prune \
allows making the network and its endpoints again.",
        after_help = "Example (lan.toml):\n  \
[[network]]\n  \
name = \"lan\"\n  \
parent = \"eth0\"\n  \
mode = \"bridge\"\n  \
[[network.subnet]]\n  \
subnet = \"192.168.0.0/24\"\n  \
gateway = \"192.168.0.1\"\n\n  \
[[shim]]\n  \
network = \"lan\"\n\n  \
[[endpoint]]\n  \
network = \"lan\"\n  \
netns = \"web\"\n  \
create = true\n  \
ips = [\"192.168.0.10\"]\n\n\
Then:\n  \
nicslice apply lan.toml --dry-run\n  \
nicslice apply lan.toml\n  \
nicslice apply lan.toml --prune --json"
    )]
    Apply(ApplyArgs),
    /// Write the systemd units nicslice-restore.service (runs `nicslice
    /// restore` once the network is up), nicslice-events.service (runs
    /// `nicslice events --fix` after it, restarted on failure) and
    /// nicslice-dhcp-agent.service (a resident `nicslice dhcp-agent`) into
    /// DIR. None is enabled: `systemctl daemon-reload && systemctl enable
    /// nicslice-restore`, and, to repair drift as it happens, `systemctl
    /// enable --now nicslice-events`; without the agent's unit the first
    /// DHCP attach starts an agent that exits when no lease is left. A file
    /// nicslice did not write is never replaced.
    InstallSystemd {
        /// Where units go.
        #[arg(default_value = "/etc/systemd/system")]
        dir: PathBuf,
    },
    /// Host access: a shim on the parent through which the host reaches the
    /// network's endpoints (the host never reaches its own macvlan/ipvlan
    /// children through the parent itself).
    #[command(subcommand)]
    Shim(ShimCommand),
    /// Install the CNI plugins nicslice-macvlan, nicslice-ipvlan and
    /// nicslice-ipam as links to this binary.
    InstallCni(InstallCniArgs),
    /// Manage the CNI plugins' lease database (nicslice-ipam's leases).
    #[command(subcommand)]
    CniLeases(CniLeasesCommand),
    /// Keep the DHCP leases of `--ipam dhcp` endpoints: renew at T1, rebind
    /// at T2, take an address whose lease ran out off its link. Runs until
    /// killed (one per state database); everything it knows is in the state
    /// database, so a killed agent started again carries on.
    DhcpAgent(DhcpAgentArgs),
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The TOML file that declares networks, shims and endpoints.
    pub file: PathBuf,
    /// Print the plan and stop: nothing changes.
    #[arg(long)]
    pub dry_run: bool,
    /// Also remove the networks, shims and endpoints nicslice made that the
    /// file does not list, and make again a network whose settings differ.
    /// Nothing nicslice did not make is ever removed.
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, Args)]
pub struct DhcpAgentArgs {
    /// One pass over the leases, then exit.
    #[arg(long)]
    pub once: bool,
    /// Renew every lease now, not at its T1 (with --once: `renew all`).
    #[arg(long)]
    pub now: bool,
    /// Seconds to wait for a server's answer to each renewal.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Exit after a pass that finds no lease held and none lost asked for
    /// again (how `attach` starts it).
    #[arg(long)]
    pub exit_when_idle: bool,
}

#[derive(Debug, Subcommand)]
pub enum CniLeasesCommand {
    /// Set an unreadable lease database aside and start a new, empty one.
    #[command(
        long_about = "Set an unreadable CNI lease database aside (renamed to FILE.unreadable, or \
FILE.unreadable.N if that is taken: nothing is replaced) and start a new, empty database in its \
place, so that CNI calls work again. Run it while no CNI call is running if you can; it waits for \
the database's lock.\n\n\
No lease is rebuilt. A CNI lease is keyed by network name, container ID and interface name: the \
damaged file cannot be read safely (LMDB may abort on a damaged page), and links in namespaces do \
not tell those keys. Containers attached before keep their addresses, but the new database does \
not know them: until they are re-attached (CNI DEL and ADD, or a restart), a new ADD may hand out \
one of their addresses. The old file is kept for inspection."
    )]
    Recover {
        /// The lease database (default location: /run/nicslice/cni-leases.mdb).
        file: PathBuf,
        /// Set the file aside even though it opens (for a file that opens
        /// but fails in use).
        #[arg(long)]
        force: bool,
    },
    /// List the addresses of a CNI network held in quarantine: someone nicslice does not
    /// manage answered for them when a link plugin with "probe" claimed them.
    Quarantined {
        /// The lease database (nicslice-ipam's "state", or cni-leases.mdb in its "dataDir").
        file: PathBuf,
        /// The CNI network's name.
        network: String,
    },
}

#[derive(Debug, Args)]
pub struct InstallCniArgs {
    /// Directory of the runtime's CNI plugins.
    #[arg(default_value = "/opt/cni/bin")]
    pub dir: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network on a parent interface.
    Create(Box<NetworkCreateArgs>),
    /// List networks.
    #[command(alias = "list")]
    Ls,
    /// Show a network with its endpoints, leases and the parent's live state.
    Inspect {
        /// Network name.
        name: String,
    },
    /// Remove a network (refused while endpoints are attached, unless --force).
    #[command(alias = "remove")]
    Rm {
        /// Network name.
        name: String,
        /// Detach every endpoint first.
        #[arg(long, short)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct NetworkCreateArgs {
    /// Network name: letters, digits, `_`, `.`, `-` (at most 64).
    pub name: String,
    /// Link kind of the endpoints: macvlan/macvtap (a MAC each) or ipvlan/ipvtap (the parent's MAC).
    #[arg(long, default_value = "macvlan", value_parser = ["macvlan", "macvtap", "ipvlan", "ipvtap"])]
    pub driver: String,
    /// The parent interface in the host namespace. `eth0.50` that does not exist is created as
    /// VLAN 50 on eth0 (and removed with the last network using it). Without --parent the
    /// network is internal: nicslice makes a dummy parent for it.
    #[arg(long)]
    pub parent: Option<String>,
    /// Use an 802.1Q sub-interface with this VLAN id on --parent (created if missing).
    #[arg(long, requires = "parent")]
    pub vlan: Option<u16>,
    /// An internal network: its parent is a dummy link nicslice creates (named by --parent, or
    /// nsl-NAME) and removes with the network; children reach each other, nothing outside.
    #[arg(long, conflicts_with = "vlan")]
    pub internal: bool,
    /// macvlan: bridge (default; children talk inside the kernel), vepa (via the switch, needs
    /// hairpin), private (children isolated), passthru (one child owns the NIC), source (by source
    /// MAC). ipvlan: l2 (default), l3 (routed, no ARP), l3s (l3 with netfilter).
    #[arg(long, value_parser = ["bridge", "vepa", "private", "passthru", "source", "l2", "l3", "l3s"])]
    pub mode: Option<String>,
    /// macvlan: nopromisc (passthru leaves promiscuous mode alone), nodst (source mode consumes
    /// listed frames); repeatable. ipvlan: bridge (default), private or vepa.
    #[arg(long = "flag", value_parser = ["nopromisc", "nodst", "bridge", "private", "vepa"])]
    pub flags: Vec<String>,
    /// Subnet in CIDR form; repeat for several (IPv4 and IPv6).
    #[arg(long = "subnet")]
    pub subnets: Vec<IpNet>,
    /// Gateway of the subnet given in the same position (default: its first address).
    #[arg(long = "gateway")]
    pub gateways: Vec<IpAddr>,
    /// Allocate automatic addresses from this range inside a subnet (matched by containment).
    #[arg(long = "ip-range")]
    pub ip_ranges: Vec<IpNet>,
    /// Reserve an address: NAME=IP (never handed out). Repeatable.
    #[arg(long = "aux-address", value_name = "NAME=IP")]
    pub aux_addresses: Vec<String>,
    /// MTU of the endpoints (at most the parent's).
    #[arg(long)]
    pub mtu: Option<u32>,
    /// Broadcast queue length requested for the parent's macvlan port.
    #[arg(long)]
    pub bcqueuelen: Option<u32>,
    /// Broadcast cutoff: multicast to at most this many children is delivered directly.
    #[arg(long, allow_negative_numbers = true)]
    pub bclim: Option<i32>,
    /// Put the parent in promiscuous mode while the network exists (restored on rm).
    #[arg(long)]
    pub promisc: bool,
    /// Let the host reach the network's endpoints: `shim add` right after
    /// create (the network is removed again if the shim cannot be made).
    #[arg(long)]
    pub host_access: bool,
    /// Allow an IPv4 link-local subnet (169.254.0.0/16), refused otherwise.
    #[arg(long)]
    pub link_local: bool,
    /// Before an address is used, ask the wire whether anyone has it (IPv4: ARP probes from
    /// 0.0.0.0; IPv6: duplicate address detection), waiting MS milliseconds (default 200). An
    /// answered address is quarantined (`network inspect` lists it) and the next one is taken.
    #[arg(long, value_name = "MS", num_args = 0..=1, require_equals = true,
          default_missing_value = "200", value_parser = clap::value_parser!(u32).range(1..=60000))]
    pub probe_conflicts: Option<u32>,
    /// Seconds a quarantined address stays out of the pool before it is probed again
    /// (default 3600).
    #[arg(long, value_name = "SECS", requires = "probe_conflicts")]
    pub probe_cooldown: Option<u64>,
    /// Where endpoint addresses come from: pool (nicslice's allocator over
    /// --subnet, the default), dhcp (a DHCPv4 server on the parent's link,
    /// asked by each endpoint with its own client identifier; no --subnet),
    /// dhcp6 (a DHCPv6 server, IA_NA: one DUID for the host, one IAID per
    /// endpoint), both: `--ipam dhcp,dhcp6` (or `--ipam dhcp --ipam dhcp6`),
    /// or etcd (a subnet shared with other hosts through an etcd cluster: --etcd).
    #[arg(long, default_value = "pool", value_delimiter = ',',
          value_parser = ["pool", "dhcp", "dhcp6", "etcd"])]
    pub ipam: Vec<String>,
    /// With --ipam etcd: the etcd cluster's client URLs (http://HOST:2379, or https://HOST:2379
    /// with --etcd-ca), comma-separated.
    #[arg(long, env = "NICSLICE_ETCD", value_name = "URL[,URL...]", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// With --ipam etcd: addresses per block a host leases at a time (default 16, at most 64).
    #[arg(long, value_name = "N", requires = "etcd")]
    pub etcd_block: Option<u32>,
    /// With --ipam etcd: seconds a host's blocks outlive its last contact with etcd (default
    /// 60); a host cut off longer refuses to allocate.
    #[arg(long, value_name = "SECS", requires = "etcd")]
    pub etcd_ttl: Option<u64>,
    /// With --ipam etcd: seconds the addresses of a host whose lease expired stay in its name
    /// (default 300); then another host probes them on the wire (ARP, from its parent) and
    /// takes back those no one answers when its pool runs out.
    #[arg(long, value_name = "SECS", requires = "etcd")]
    pub etcd_cooldown: Option<u64>,
    /// With https:// etcd URLs: this host's client certificate (PEM), for an etcd started with
    /// --client-cert-auth; with --etcd-key.
    #[arg(long, env = "NICSLICE_ETCD_CERT", value_name = "PEM")]
    pub etcd_cert: Option<PathBuf>,
    /// With https:// etcd URLs: the private key of --etcd-cert (PEM).
    #[arg(long, env = "NICSLICE_ETCD_KEY", value_name = "PEM")]
    pub etcd_key: Option<PathBuf>,
    /// With https:// etcd URLs: the CA that signed etcd's server certificate (PEM), the only
    /// one trusted. The files are read by every command that talks to etcd.
    #[arg(long, env = "NICSLICE_ETCD_CA", value_name = "PEM")]
    pub etcd_ca: Option<PathBuf>,
}

/// How to name the target namespace.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// Target namespace: an iproute2 name (/run/netns/NAME) or a path to a namespace file.
    #[arg(long, value_parser = netns_arg)]
    pub netns: Option<String>,
    /// Target the network namespace of this process (a container's pid).
    #[arg(long)]
    pub pid: Option<u32>,
}

/// A namespace as `--netns`/`--host-netns` take it: a path (with a `/`) or
/// an iproute2 name, which is never empty, `.` or `..` (iproute2 refuses
/// those too); refused here, before anything is looked up.
fn netns_arg(s: &str) -> Result<String, String> {
    match s {
        "" => Err("an empty name names no namespace; give an iproute2 name (see `ip netns list`) \
                   or the path of a namespace file"
            .into()),
        "." | ".." => Err(format!(
            "{s:?} is not a namespace name; give an iproute2 name (see `ip netns list`) or the \
             path of a namespace file"
        )),
        _ => Ok(s.to_string()),
    }
}

#[derive(Debug, Args)]
pub struct AttachArgs {
    /// Network name.
    pub network: String,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Interface name inside the namespace.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
    /// Static address (one per family); otherwise the next free one.
    #[arg(long = "ip")]
    pub ips: Vec<IpAddr>,
    /// MAC address of the interface (default: random, chosen by the kernel).
    #[arg(long)]
    pub mac: Option<String>,
    /// Source mode: accept frames from this MAC. Repeatable.
    #[arg(long = "source-mac")]
    pub source_macs: Vec<String>,
    /// Do not add the default route via the gateway.
    #[arg(long)]
    pub no_default_route: bool,
    /// Another route: DEST (through the device) or DEST,via=GATEWAY, the
    /// gateway on one of the network's subnets. Repeatable.
    #[arg(long = "route", value_name = "DEST[,via=GW]")]
    pub routes: Vec<String>,
    /// DHCP networks: the client identifier to present, as text or as
    /// hex bytes (01:aa:bb:...); default: derived from network, namespace
    /// and interface name, so a re-attached endpoint gets its address back.
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// DHCP networks: seconds to wait for the server before giving up (and
    /// undoing everything).
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub dhcp_timeout: f64,
    /// DHCP networks: do not start `nicslice dhcp-agent` (one is started
    /// when none runs for this state database; use this when a service
    /// manager runs it).
    #[arg(long)]
    pub no_agent: bool,
}

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Network name.
    pub network: String,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Interface name inside the namespace.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
}

#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// List endpoints, of one network or all.
    #[command(alias = "list")]
    Ls {
        /// Only this network.
        network: Option<String>,
    },
    /// Change a source-mode endpoint's list of accepted source MACs.
    Macaddr(MacaddrArgs),
    /// Compare each recorded endpoint with the kernel (the check a CNI CHECK
    /// runs): its namespace, link, kind, mode, MAC, addresses and routes.
    /// Exits 1 when any differs.
    Check {
        /// Only this network.
        network: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ShimCommand {
    /// Make the network's shim in the host namespace (a bridge-mode macvlan on
    /// the parent; on ipvlan, a child in the parent's mode) and route every
    /// endpoint through it; later attaches get their routes at once.
    ///
    /// For IPv4 the host's own address on the parent is borrowed as the
    /// routes' source (no address spent); IPv6, and IPv4 when the parent has
    /// no address, takes an address of the network's pool (or --ip). Refused
    /// when the reachability model says the shim cannot reach the children
    /// (passthru, private, vepa without hairpin, source mode), and undone if
    /// the host would lose a route or a neighbour it reached before.
    Add {
        /// Network name.
        network: String,
        /// The shim's interface name (default nsh-ID).
        #[arg(long)]
        name: Option<String>,
        /// An address of the network's pool for the shim itself, at most one
        /// per family (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        /// Route the network's allocation range (its --ip-range, else its
        /// subnet) through the shim as one route, instead of a host route per
        /// endpoint on attach. Refused when the range is or covers a route
        /// of the parent's (the parent's subnet route: give the network an
        /// --ip-range inside its subnet) or holds the host's gateway.
        #[arg(long)]
        route_range: bool,
    },
    /// Remove the network's shim, its routes and addresses.
    #[command(alias = "remove")]
    Rm {
        /// Network name.
        network: String,
    },
    /// List shims with the addresses routed through them.
    #[command(alias = "list")]
    Ls,
}

#[derive(Debug, Args)]
pub struct MacaddrArgs {
    /// Network name.
    pub network: String,
    /// add, del, set (replace the list) or flush (empty it).
    #[arg(value_parser = ["add", "del", "set", "flush"])]
    pub op: String,
    /// MAC addresses.
    pub macs: Vec<String>,
    #[command(flatten)]
    pub target: TargetArgs,
    /// Interface name inside the namespace.
    #[arg(long, default_value = "eth0")]
    pub ifname: String,
}

#[derive(Debug, Args)]
pub struct LabArgs {
    /// Only scenarios about this mode (bridge, vepa, private, passthru, source, macvtap, l2, l3, l3s). Repeatable.
    #[arg(long)]
    pub mode: Vec<String>,
    /// Only this scenario (see --list). Repeatable.
    #[arg(long)]
    pub only: Vec<String>,
    /// Leave the namespaces up to explore, and print how to enter and remove them.
    #[arg(long)]
    pub keep: bool,
    /// Remove every namespace earlier `--keep` runs left up (and any a killed
    /// lab left behind), then exit.
    #[arg(long, conflicts_with_all = ["keep", "only", "mode", "markdown", "list"])]
    pub clean: bool,
    /// Print Markdown tables (for docs).
    #[arg(long)]
    pub markdown: bool,
    /// List the scenarios and exit.
    #[arg(long)]
    pub list: bool,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// A topology in TOML or JSON (see docs/topology.md); default: the live state.
    pub file: Option<PathBuf>,
    /// Explain one of the lab's scenarios instead (`nicslice lab --list`).
    #[arg(long, conflicts_with = "file")]
    pub preset: Option<String>,
    /// Only this pair: the sending endpoint...
    #[arg(long)]
    pub from: Option<String>,
    /// ...and the receiving one.
    #[arg(long)]
    pub to: Option<String>,
}
