//! The fleet pool (`--ipam etcd`, issue 14) through the CLI, against real
//! etcd 3.4 processes: a cluster on 127.0.0.1 inside a namespace the test
//! makes (so it binds on that namespace's lo, never the host's), and four
//! "hosts": four namespaces whose parents are veths into one bridge, each
//! with its own state database, all on one fleet network. The nicslice
//! processes run in etcd's namespace (to reach 127.0.0.1) with
//! `--host-netns` naming their host. Needs Debian's etcd-server
//! (`apt-get install etcd-server`; /usr/bin/etcd).

mod common;
mod etcd;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use etcd::{Cluster, in_vm};
use nicslice_kernel::{Netns, RouteSocket};
use nicslice_lab::{Host, World};

/// The world of a test: the switch, etcd's namespace, and the hosts, each
/// with its state database and a namespace for its endpoints ("kid").
struct Fleet {
    world: World,
    _switch: Netns,
    etcd_ns: Netns,
    etcd_name: String,
    hosts: Vec<Host>,
    kids: Vec<(Netns, String)>,
    states: Vec<PathBuf>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for state in &self.states {
            nicslice_store::Store::remove_files(state);
        }
    }
}

impl Fleet {
    fn new(tag: &str, hosts: usize) -> Fleet {
        let mut world = World::new(tag);
        let switch = world.switch(None).unwrap();
        let etcd_ns = world.netns("etcd").unwrap();
        let etcd_name = world.name_of("etcd");
        let mut all = Vec::new();
        let mut kids = Vec::new();
        let mut states = Vec::new();
        for h in 0..hosts {
            all.push(world.host(&switch, &format!("h{h}"), "eth0", None).unwrap());
            let role = format!("kid{h}");
            kids.push((world.netns(&role).unwrap(), world.name_of(&role)));
            states.push(std::env::temp_dir().join(format!("{}-h{h}.db", world.prefix())));
        }
        Fleet { world, _switch: switch, etcd_ns, etcd_name, hosts: all, kids, states }
    }

    /// The `nicslice` command of host `h`, run in etcd's namespace.
    fn command(&self, h: usize, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.etcd_name, env!("CARGO_BIN_EXE_nicslice")])
            .arg("--state")
            .arg(&self.states[h])
            .args(["--host-netns", &self.hosts[h].netns_name])
            .args(args)
            .env_remove("NICSLICE_FAIL_AT")
            .env_remove("NICSLICE_ETCD");
        cmd
    }

    fn run(&self, h: usize, args: &[&str]) -> Output {
        self.command(h, args).output().expect("run nicslice")
    }

    fn ok(&self, h: usize, args: &[&str]) -> String {
        let out = self.run(h, args);
        assert!(
            out.status.success(),
            "host {h}: nicslice {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, h: usize, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(h, &all)).unwrap()
    }

    /// `network create fleet` on every host, sharing 10.77.0.0/22.
    fn create(&self, cluster: &Cluster, extra: &[&str]) {
        let urls = cluster.clients.join(",");
        for h in 0..self.hosts.len() {
            let mut args = vec!["network", "create", "fleet", "--parent", "eth0"];
            args.extend_from_slice(&["--subnet", "10.77.0.0/22", "--ipam", "etcd"]);
            args.extend_from_slice(&["--etcd", &urls]);
            args.extend_from_slice(extra);
            self.ok(h, &args);
        }
    }

    fn attach(&self, h: usize, ifname: &str) -> Output {
        self.run(h, &["attach", "fleet", "--netns", &self.kids[h].1, "--ifname", ifname])
    }

    /// Every address of the 10.77 and fd77:: subnets on the kids' links, as
    /// the kernel has them, duplicates kept.
    fn kernel_addresses(&self) -> Vec<IpAddr> {
        let mut out = Vec::new();
        for (ns, _) in &self.kids {
            let mut sock = RouteSocket::open_in(ns).unwrap();
            for (_, a) in sock.addresses(None).unwrap() {
                let ip = a.addr().to_string();
                if ip.starts_with("10.77.") || ip.starts_with("fd77:") {
                    out.push(a.addr());
                }
            }
        }
        out
    }

    /// `network inspect fleet --json`'s fleet part, asked of host `h`.
    fn pool(&self, h: usize) -> serde_json::Value {
        self.json(h, &["network", "inspect", "fleet"])["fleet"].clone()
    }

    /// The addresses etcd records in use for host `h`'s name, and its spares.
    fn recorded(&self, h: usize) -> (BTreeSet<IpAddr>, u64) {
        let pool = self.pool(h);
        let me = pool["this_host"].as_str().unwrap().to_string();
        let mine = pool["hosts"].as_array().unwrap().iter().find(|x| x["host"] == me.as_str());
        let Some(mine) = mine else { return (BTreeSet::new(), 0) };
        let in_use = mine["in_use"].as_array().unwrap();
        (
            in_use.iter().map(|ip| ip.as_str().unwrap().parse().unwrap()).collect(),
            mine["spare"].as_u64().unwrap(),
        )
    }
}

fn distinct(all: &[IpAddr]) -> BTreeSet<IpAddr> {
    let set: BTreeSet<IpAddr> = all.iter().copied().collect();
    assert_eq!(set.len(), all.len(), "duplicate addresses: {all:?}");
    set
}

#[test]
fn four_hosts_share_one_subnet_without_duplicates_and_a_dead_member_changes_nothing() {
    if in_vm() {
        return;
    }
    let fleet = Fleet::new("fleet4", 4);
    let cluster = Cluster::start(&fleet.etcd_ns, &fleet.etcd_name, 3);
    fleet.create(&cluster, &["--etcd-block", "16"]);
    let cluster = Mutex::new(cluster);

    // 400 attaches spread over the hosts, 64 at a time; the leader killed
    // when half are done.
    const TOTAL: usize = 400;
    const AT_ONCE: usize = 64;
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let started = Instant::now();
    let killed = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..AT_ONCE {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= TOTAL {
                        return;
                    }
                    let out = fleet.attach(i % 4, &format!("e{}", i / 4));
                    if !out.status.success() {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("attach {i}: {}", String::from_utf8_lossy(&out.stderr)));
                    }
                    if done.fetch_add(1, Ordering::SeqCst) + 1 == TOTAL / 2 {
                        let mut cluster = cluster.lock().unwrap();
                        let leader = cluster.leader(&fleet.etcd_ns);
                        cluster.kill(leader);
                        *killed.lock().unwrap() = Some(leader);
                    }
                }
            });
        }
    });
    let elapsed = started.elapsed();
    println!("{TOTAL} attaches over 4 hosts, {AT_ONCE} at a time: {elapsed:?}");
    let failures = failures.into_inner().unwrap();
    assert!(failures.is_empty(), "{} attaches failed: {failures:?}", failures.len());
    assert!(killed.into_inner().unwrap().is_some(), "the leader was killed half-way");

    // What a user checks: 400 distinct addresses on the links.
    let on_links = fleet.kernel_addresses();
    assert_eq!(on_links.len(), TOTAL);
    let on_links = distinct(&on_links);

    // etcd records each in use for the host whose link has it; blocks are
    // held by one host each, and the hosts agree on what etcd holds.
    let pool = fleet.pool(0);
    let mut recorded = Vec::new();
    for h in 0..4 {
        let (in_use, _) = fleet.recorded(h);
        let mut sock = RouteSocket::open_in(&fleet.kids[h].0).unwrap();
        let mine: BTreeSet<IpAddr> = sock
            .addresses(None)
            .unwrap()
            .into_iter()
            .map(|(_, a)| a.addr())
            .filter(|a| a.to_string().starts_with("10.77."))
            .collect();
        assert_eq!(in_use, mine, "host {h}: etcd's records and the kernel's addresses");
        recorded.extend(in_use);
    }
    assert_eq!(distinct(&recorded), on_links);
    let holders: BTreeSet<&str> =
        pool["blocks"].as_array().unwrap().iter().map(|b| b["holder"].as_str().unwrap()).collect();
    assert_eq!(holders.len(), 4, "each host leased blocks: {pool}");

    // Detach gives the address back to its host, which hands it out again.
    let kid = &fleet.kids[1].1;
    let gone = fleet.json(1, &["detach", "fleet", "--netns", kid, "--ifname", "e0"]);
    let gone: IpAddr =
        gone["addresses"][0].as_str().unwrap().split('/').next().unwrap().parse().unwrap();
    assert!(!fleet.recorded(1).0.contains(&gone), "{gone} is no longer recorded in use");
    let again = fleet.json(1, &["attach", "fleet", "--netns", kid, "--ifname", "again"]);
    assert_eq!(again["addresses"][0].as_str().unwrap().split('/').next(), Some(&*gone.to_string()));

    // A host that removes the network gives its blocks and addresses back.
    let leaving = fleet.pool(3)["this_host"].as_str().unwrap().to_string();
    fleet.ok(3, &["network", "rm", "fleet", "--force"]);
    let pool = fleet.pool(0);
    let named = |list: &serde_json::Value, field: &str| {
        list.as_array().unwrap().iter().any(|x| x[field] == leaving.as_str())
    };
    assert!(!named(&pool["blocks"], "holder"), "{leaving}'s blocks are gone: {pool}");
    assert!(!named(&pool["hosts"], "host"), "{leaving}'s addresses are gone: {pool}");
}

#[test]
fn a_nicslice_killed_at_random_points_leaves_no_duplicate_and_no_lost_address() {
    if in_vm() {
        return;
    }
    let fleet = Fleet::new("fleetkill", 2);
    let cluster = Cluster::start(&fleet.etcd_ns, &fleet.etcd_name, 1);
    fleet.create(&cluster, &["--etcd-block", "16"]);

    // Host 0's attaches are SIGKILLed after 0 to 60 ms (by their pid: the
    // `ip netns exec` process execs nicslice), host 1 attaches beside it.
    let mut seed = std::process::id() as u64;
    let mut random = move |n: u64| {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut killed = 0;
    for i in 0..100 {
        let mut child = fleet
            .command(
                0,
                &["attach", "fleet", "--netns", &fleet.kids[0].1, "--ifname", &format!("k{i}")],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if i % 4 == 0 {
            let out = fleet.attach(1, &format!("b{i}"));
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(random(60)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }
    println!("{killed} of 100 attaches killed before they ended");
    // The next command ends what the killed ones left (their intents).
    fleet.ok(0, &["endpoint", "ls"]);
    let on_links = fleet.kernel_addresses();
    distinct(&on_links);

    // No address lost: every one etcd records in host 0's name is either in
    // use by one of its endpoints or handed out again here. Detach them all,
    // then attach as many as are recorded: exactly those come back.
    let (in_use, spare) = fleet.recorded(0);
    let listed = fleet.json(0, &["endpoint", "ls", "fleet"]);
    for ep in listed.as_array().unwrap() {
        fleet.ok(
            0,
            &[
                "detach",
                "fleet",
                "--netns",
                &fleet.kids[0].1,
                "--ifname",
                ep["ifname"].as_str().unwrap(),
            ],
        );
    }
    let total = in_use.len() + usize::try_from(spare).unwrap();
    let recorded_before: BTreeSet<IpAddr> = in_use;
    let mut handed = BTreeSet::new();
    for i in 0..total {
        let out = fleet.json(
            0,
            &["attach", "fleet", "--netns", &fleet.kids[0].1, "--ifname", &format!("r{i}")],
        );
        let ip: IpAddr =
            out["addresses"][0].as_str().unwrap().split('/').next().unwrap().parse().unwrap();
        handed.insert(ip);
    }
    let (after, spare_after) = fleet.recorded(0);
    assert_eq!(spare_after, 0, "every address of host 0 in use again");
    assert_eq!(after, handed, "etcd records what was handed out");
    assert!(
        recorded_before.is_subset(&after),
        "an address recorded in use was lost: {recorded_before:?} vs {after:?}"
    );
    assert_eq!(after.len(), total, "no block was leased beyond the addresses already recorded");
    distinct(&fleet.kernel_addresses());
}

#[test]
fn a_host_cut_off_serves_from_its_spares_until_its_lease_expires_then_refuses() {
    if in_vm() {
        return;
    }
    let fleet = Fleet::new("fleetcut", 1);
    let mut cluster = Cluster::start(&fleet.etcd_ns, &fleet.etcd_name, 1);
    let ttl = Duration::from_secs(6);
    fleet.create(&cluster, &["--etcd-block", "8", "--etcd-ttl", "6"]);
    let before_first = Instant::now();
    let first = fleet.attach(0, "e0");
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    cluster.kill(0);

    // Within the lease: from the host's spares, no etcd needed.
    let second = fleet.attach(0, "e1");
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(before_first.elapsed() < ttl, "the second attach came within the lease");

    // Past it: one clear line, and nothing made.
    std::thread::sleep(ttl.saturating_sub(before_first.elapsed()) + Duration::from_millis(300));
    let refused = fleet.attach(0, "e2");
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "an attach past the lease must be refused");
    assert!(err.contains("cut off from etcd"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert_eq!(fleet.kernel_addresses().len(), 2);
    assert!(common::link(&fleet.kids[0].0, "e2").is_none());
    // inspect says etcd did not answer, and still shows the rest.
    let shown = fleet.ok(0, &["network", "inspect", "fleet"]);
    assert!(shown.contains("fleet pool: cannot read it from etcd"), "{shown}");
    assert!(shown.contains("endpoint e1"), "{shown}");
    // A detach without etcd is done here; its give-back waits for the next
    // batch.
    fleet.ok(0, &["detach", "fleet", "--netns", &fleet.kids[0].1, "--ifname", "e1"]);
    assert_eq!(fleet.kernel_addresses().len(), 1);

    // Without etcd a fleet network cannot be made at all, nor https without its CA.
    let out = fleet.run(
        0,
        &[
            "network",
            "create",
            "late",
            "--parent",
            "eth0",
            "--subnet",
            "10.78.0.0/24",
            "--ipam",
            "etcd",
            "--etcd",
            &cluster.clients[0],
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("etcd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = fleet.run(
        0,
        &[
            "network",
            "create",
            "tls",
            "--parent",
            "eth0",
            "--subnet",
            "10.78.0.0/24",
            "--ipam",
            "etcd",
            "--etcd",
            "https://127.0.0.1:2379",
        ],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("TLS needs --etcd-ca"));
    let _ = &fleet.world;
}

/// Detaches note their give-back and make no etcd request, etcd stopped
/// or not; `network inspect` writes what is noted first, so that it shows
/// each address as its endpoint's, or free, as the host holds them.
#[test]
fn detaches_wait_for_no_etcd_and_inspect_then_shows_their_addresses_free() {
    if in_vm() {
        return;
    }
    let fleet = Fleet::new("fleetgive", 1);
    let mut cluster = Cluster::start(&fleet.etcd_ns, &fleet.etcd_name, 1);
    fleet.create(&cluster, &["--etcd-block", "16"]);
    let kid = &fleet.kids[0].1;
    let ip = |out: &serde_json::Value| -> IpAddr {
        out["addresses"][0].as_str().unwrap().split('/').next().unwrap().parse().unwrap()
    };
    let attach =
        |ifname: &str| ip(&fleet.json(0, &["attach", "fleet", "--netns", kid, "--ifname", ifname]));
    let detach = |ifname: &str| {
        let started = Instant::now();
        fleet.ok(0, &["detach", "fleet", "--netns", kid, "--ifname", ifname]);
        started.elapsed()
    };
    let e0 = attach("e0");
    let e1 = attach("e1");
    let e2 = attach("e2");
    let (in_use, spare) = fleet.recorded(0);
    assert_eq!(in_use, BTreeSet::from([e0, e1, e2]), "inspect wrote the notes");
    let before = cluster.requests(&fleet.etcd_ns);
    detach("e1");
    assert_eq!(cluster.requests(&fleet.etcd_ns), before, "the detach asked etcd nothing");
    cluster.pause(0);
    let took = detach("e2");
    cluster.resume(0);
    assert!(took < Duration::from_millis(900), "the detach waited for etcd: {took:?}");
    let (after, spare_after) = fleet.recorded(0);
    assert_eq!(after, BTreeSet::from([e0]), "both give-backs written by inspect");
    assert_eq!(spare_after, spare + 2);
    // Handed out again before any batch: inspect shows its new endpoint.
    assert_eq!(attach("e3"), e1, "the lowest spare again");
    fleet.ok(0, &["detach", "fleet", "--netns", kid, "--ifname", "e3"]);
    assert_eq!(attach("e4"), e1);
    let (now, _) = fleet.recorded(0);
    assert_eq!(now, BTreeSet::from([e0, e1]));
    // etcd's owners: e0's and e4's, none of the endpoints detached.
    let etcd = cluster.client();
    let prefix = b"/nicslice/fleet/fleet/owner/cli/";
    let owners = fleet.etcd_ns.run(|| etcd.get_prefix(prefix)).unwrap().unwrap();
    let mut owners: Vec<(String, String)> = owners
        .into_iter()
        .map(|kv| {
            let key = String::from_utf8(kv.key).unwrap();
            (key.rsplit('/').next().unwrap().to_string(), String::from_utf8(kv.value).unwrap())
        })
        .collect();
    owners.sort();
    assert_eq!(owners, [("e0".into(), e0.to_string()), ("e4".into(), e1.to_string())]);
}

#[test]
fn a_dead_hosts_addresses_return_after_the_cooldown_unless_they_answer() {
    if in_vm() {
        return;
    }
    dead_host_reclaimed("fleetdead", "10.77.0.0/28");
}

/// The same over IPv6: the dead host's addresses are asked with neighbour
/// solicitations in DAD form, its endpoint that lives on answers with an
/// advertisement.
#[test]
fn a_dead_hosts_ipv6_addresses_return_after_the_cooldown_unless_they_answer() {
    if in_vm() {
        return;
    }
    dead_host_reclaimed("fleetdead6", "fd77::/124");
}

/// Two hosts share `subnet` (16 addresses, blocks of 4); host 0 takes it
/// all and dies with one endpoint still answering; once its lease expired
/// and the cool-down passed, host 1 takes back every address but that one,
/// which `network inspect` reports with the endpoint's MAC.
fn dead_host_reclaimed(tag: &str, subnet: &str) {
    let fleet = Fleet::new(tag, 2);
    let cluster = Cluster::start(&fleet.etcd_ns, &fleet.etcd_name, 1);
    let (ttl, cooldown) = (Duration::from_secs(2), Duration::from_secs(3));
    for h in 0..2 {
        fleet.ok(
            h,
            &[
                "network",
                "create",
                "fleet",
                "--parent",
                "eth0",
                "--subnet",
                subnet,
                "--ipam",
                "etcd",
                "--etcd",
                &cluster.clients[0],
                "--etcd-block",
                "4",
                "--etcd-ttl",
                "2",
                "--etcd-cooldown",
                "3",
            ],
        );
    }
    let ip_of = |out: &Output| -> IpAddr {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["addresses"][0].as_str().unwrap().split('/').next().unwrap().parse().unwrap()
    };
    let attach = |h: usize, ifname: &str| {
        fleet
            .run(h, &["attach", "fleet", "--netns", &fleet.kids[h].1, "--ifname", ifname, "--json"])
    };
    let refused = |out: &Output| {
        assert!(!out.status.success(), "expected a refusal");
        String::from_utf8_lossy(&out.stderr).to_string()
    };

    // Host 0 takes the whole pool.
    let mut held = Vec::new();
    loop {
        let out = attach(0, &format!("a{}", held.len()));
        if !out.status.success() {
            assert!(refused(&out).contains("is full"), "{}", refused(&out));
            break;
        }
        held.push(ip_of(&out));
    }
    assert!(held.len() >= 10, "host 0 took the pool: {held:?}");
    assert!(refused(&attach(1, "b")).contains("is full"));

    // Host 0 dies: its state goes, its lease expires; of its endpoints only
    // a0 lives on and answers on the wire.
    for i in 1..held.len() {
        let gone = Command::new("ip")
            .args(["-n", &fleet.kids[0].1, "link", "del", &format!("a{i}")])
            .status()
            .unwrap();
        assert!(gone.success());
    }
    nicslice_store::Store::remove_files(&fleet.states[0]);
    let died = Instant::now();
    // Its lease still lives: nothing to take.
    assert!(refused(&attach(1, "b")).contains("is full"));
    std::thread::sleep(ttl + Duration::from_millis(1500));
    // Its lease expired: the cool-down starts now, and nothing is taken yet.
    let err = refused(&attach(1, "b"));
    assert!(err.contains("return in"), "{err}");
    let cooled = Instant::now();
    std::thread::sleep(cooldown + Duration::from_millis(500));

    // Past the cool-down: host 1 gets every address but the answered one.
    let mut taken = Vec::new();
    loop {
        let out = attach(1, &format!("b{}", taken.len()));
        if !out.status.success() {
            let err = refused(&out);
            assert!(err.contains("answer on the wire"), "{err}");
            break;
        }
        taken.push(ip_of(&out));
        assert!(taken.len() < held.len(), "host 1 took more than host 0 held: {taken:?}");
    }
    println!("host 0 died {:?} ago, cool-down from {:?} ago", died.elapsed(), cooled.elapsed());
    let expected: BTreeSet<IpAddr> = held[1..].iter().copied().collect();
    assert_eq!(distinct(&taken), expected, "host 1 took back exactly the unanswered ones");
    assert!(!taken.contains(&held[0]), "the answered address stays held");
    distinct(&fleet.kernel_addresses());

    // inspect reports the dead host and who answered for its address.
    let pool = fleet.pool(1);
    let dead = pool["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["alive"] == false)
        .unwrap_or_else(|| panic!("the dead host is listed: {pool}"));
    // Its last record may still say spare: its attach did not wait for etcd.
    let left = dead["in_use"].as_array().unwrap().len() + dead["spare"].as_u64().unwrap() as usize;
    assert_eq!(left, 1, "only the answered address stays in its name: {pool}");
    let answered = &dead["answered"][0];
    assert_eq!(answered["ip"].as_str(), Some(&*held[0].to_string()), "{pool}");
    let a0 = common::link(&fleet.kids[0].0, "a0").expect("a0 lives");
    assert_eq!(answered["mac"].as_str(), a0.mac.map(|m| m.to_string()).as_deref(), "{pool}");
    let _ = &fleet.world;
}

#[test]
fn a_foreign_host_answering_an_address_of_the_pool_makes_the_probing_allocation_skip_it() {
    if in_vm() {
        return;
    }
    let mut fleet = Fleet::new("fleetprobe", 1);
    let cluster = Cluster::start(&fleet.etcd_ns, &fleet.etcd_name, 1);
    fleet.create(&cluster, &["--etcd-block", "8", "--probe-conflicts=300"]);
    let ip_of = |v: &serde_json::Value| -> IpAddr {
        v["addresses"][0].as_str().unwrap().split('/').next().unwrap().parse().unwrap()
    };
    let kid = fleet.kids[0].1.clone();
    let first = ip_of(&fleet.json(0, &["attach", "fleet", "--netns", &kid, "--ifname", "e0"]));

    // A host nicslice does not manage answers for the next address.
    let IpAddr::V4(v4) = first else { panic!("IPv4 pool") };
    let taken = IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) + 1));
    let foreign = fleet
        .world
        .host(&fleet._switch, "foreign", "eth0", Some(format!("{taken}/22").parse().unwrap()))
        .unwrap();
    let foreign_mac = common::link(&foreign.netns, "eth0").unwrap().mac.unwrap();

    let next = ip_of(&fleet.json(0, &["attach", "fleet", "--netns", &kid, "--ifname", "e1"]));
    assert_ne!(next, taken, "the answered address is skipped");
    assert_eq!(next, IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) + 2)));
    let shown = fleet.json(0, &["network", "inspect", "fleet"]);
    let quarantined = shown["quarantined"].as_array().expect("quarantined listed");
    assert_eq!(quarantined.len(), 1, "{shown}");
    assert_eq!(quarantined[0]["ip"].as_str(), Some(&*taken.to_string()), "{shown}");
    assert_eq!(quarantined[0]["answered_by"].as_str(), Some(&*foreign_mac.to_string()), "{shown}");
    distinct(&fleet.kernel_addresses());
}
