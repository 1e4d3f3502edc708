//! nicslice-ipam with `"store": {"etcd": {...}}` (issue 14) behind
//! nicslice-macvlan, as a CNI runtime calls them (the `nicslice` binary
//! linked under the plugins' names), against a real etcd 3.4: two "hosts"
//! (namespaces whose parents are veths into one bridge, each with its own
//! state database) share one fleet range. etcd runs in the switch's
//! namespace on the bridge's address, which the hosts reach over their
//! parents. Concurrent ADDs on both hosts get distinct addresses, which
//! etcd records under `owner/cni/HOST/CONTAINER/IFNAME`; DEL and GC give
//! them back. Those records are written in batches, every 16th ADD, DEL or
//! GC release of a host: the others make no etcd request at all, etcd
//! stopped or not. ADD with etcd gone and no spare fails with code 11 and
//! leaves nothing; a narrowed range hands out only its own spares. Needs
//! Debian's etcd-server.

mod common;
mod etcd;

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd::{Cluster, in_vm};
use nicslice_kernel::Netns;
use nicslice_lab::{Host, World};
use nicslice_store::fleet::etcd::Op;
use serde_json::{Value, json};

/// The switch's address, where etcd listens.
const SWITCH: &str = "192.168.0.1";
/// The fleet range inside the switch's subnet.
const RANGE: (&str, &str) = ("192.168.0.128", "192.168.0.191");

/// The world: the switch (with etcd), the hosts with their state databases,
/// and the CNI_PATH directory.
struct Fleet {
    world: World,
    switch: Netns,
    hosts: Vec<Host>,
    states: Vec<PathBuf>,
    plugins: PathBuf,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for state in &self.states {
            nicslice_store::Store::remove_files(state);
        }
        let _ = std::fs::remove_dir_all(&self.plugins);
    }
}

/// One plugin call's outcome: success, and the JSON it printed.
struct Call {
    ok: bool,
    json: Value,
    stderr: String,
}

impl Fleet {
    fn new(tag: &str, hosts: usize) -> Fleet {
        let mut world = World::new(tag);
        let switch = world.switch(Some(format!("{SWITCH}/24").parse().unwrap())).unwrap();
        let mut all = Vec::new();
        let mut states = Vec::new();
        for h in 0..hosts {
            let address = format!("192.168.0.{}/24", 250 + h).parse().unwrap();
            all.push(world.host(&switch, &format!("h{h}"), "eth0", Some(address)).unwrap());
            states.push(std::env::temp_dir().join(format!("{}-h{h}.db", world.prefix())));
        }
        let plugins = std::env::temp_dir().join(format!("{}-cni", world.prefix()));
        std::fs::create_dir_all(&plugins).unwrap();
        for name in ["nicslice-macvlan", "nicslice-ipam"] {
            let _ = std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_nicslice"), plugins.join(name));
        }
        Fleet { world, switch, hosts: all, states, plugins }
    }

    fn etcd(&self) -> Cluster {
        Cluster::start_on(&self.switch, &self.world.name_of("sw"), 1, SWITCH)
    }

    /// Host `h`'s configuration: the reference keys, `store.etcd` added.
    fn conf(&self, h: usize, cluster: &Cluster, block: u32) -> Value {
        json!({
            "cniVersion": "1.1.0", "name": "fleetnet", "type": "nicslice-macvlan",
            "master": "eth0", "mode": "bridge",
            "ipam": {
                "type": "nicslice-ipam", "subnet": "192.168.0.0/24",
                "rangeStart": RANGE.0, "rangeEnd": RANGE.1, "gateway": SWITCH,
                "routes": [{"dst": "0.0.0.0/0"}],
                "store": {"etcd": {"endpoints": cluster.clients, "blockSize": block,
                                   "ttlSeconds": 60, "state": self.states[h]}}
            }
        })
    }

    /// A container namespace: (handle, CNI_NETNS path).
    fn container(&mut self, role: &str) -> (Netns, String) {
        let ns = self.world.netns(role).unwrap();
        (ns, format!("/run/netns/{}", self.world.name_of(role)))
    }

    /// Runs `plugin` in host `h`'s namespace, as a runtime does (this
    /// thread enters it to start the plugin, and comes back).
    fn call(
        &self,
        h: usize,
        plugin: &str,
        cmd: &str,
        (id, netns): (&str, &str),
        conf: &Value,
    ) -> Call {
        let inside = self.hosts[h].netns.enter().unwrap();
        let mut child = Command::new(self.plugins.join(plugin))
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", &self.plugins)
            .env_remove("NICSLICE_FAIL_AT")
            .env_remove("NICSLICE_STATE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(inside);
        child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        Call {
            ok: out.status.success(),
            json: serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn ip_of(result: &Value) -> IpAddr {
    let ips = result["ips"].as_array().expect("ips");
    assert_eq!(ips.len(), 1, "{result}");
    ips[0]["address"].as_str().unwrap().split('/').next().unwrap().parse().unwrap()
}

/// What etcd records as CNI owners of `fleetnet`: owner key suffix
/// (`HOST/CONTAINER/IFNAME`) → address.
fn owners(fleet: &Fleet, cluster: &Cluster) -> Vec<(String, IpAddr)> {
    let prefix = b"/nicslice/fleet/fleetnet/owner/cni/";
    let etcd = cluster.client();
    let kvs = fleet.switch.run(|| etcd.get_prefix(prefix)).unwrap().unwrap();
    kvs.into_iter()
        .map(|kv| {
            let key = String::from_utf8(kv.key[prefix.len()..].to_vec()).unwrap();
            (key, String::from_utf8(kv.value).unwrap().parse().unwrap())
        })
        .collect()
}

/// The value of etcd's record of `ip` in `fleetnet`.
fn address_record(fleet: &Fleet, cluster: &Cluster, ip: IpAddr) -> String {
    let etcd = cluster.client();
    let prefix = b"/nicslice/fleet/fleetnet/addr/";
    let records = fleet.switch.run(|| etcd.get_prefix(prefix)).unwrap().unwrap();
    let kv = records.into_iter().find(|kv| kv.key.ends_with(format!("/{ip}").as_bytes()));
    String::from_utf8(kv.expect("a record of the address").value).unwrap()
}

/// The addresses the ADDs of the `dropped` containers returned.
fn dropped_ips(
    handed: &[IpAddr],
    containers: &[(usize, String, Netns, String)],
    dropped: &[&(usize, String, Netns, String)],
) -> BTreeSet<IpAddr> {
    dropped.iter().map(|d| handed[containers.iter().position(|c| c.1 == d.1).unwrap()]).collect()
}

fn in_range(ip: IpAddr) -> bool {
    let (first, last): (IpAddr, IpAddr) = (RANGE.0.parse().unwrap(), RANGE.1.parse().unwrap());
    ip >= first && ip <= last
}

#[test]
fn two_hosts_add_at_once_on_one_fleet_range_then_del_add_again_and_gc() {
    if in_vm() {
        return;
    }
    let mut fleet = Fleet::new("cnifleet", 3);
    let cluster = fleet.etcd();
    // Blocks of 4: each host leases several while the ADDs run. Each host's
    // 16th ADD writes the 16 records in one batch.
    let confs = [fleet.conf(0, &cluster, 4), fleet.conf(1, &cluster, 4)];
    const PER_HOST: usize = 16;
    let containers: Vec<(usize, String, Netns, String)> = (0..2 * PER_HOST)
        .map(|i| {
            let role = format!("c{i}");
            let (ns, path) = fleet.container(&role);
            (i % 2, format!("{}-{role}", fleet.world.prefix()), ns, path)
        })
        .collect();

    // Every ADD of both hosts at once.
    let started = Instant::now();
    let results: Vec<Call> = std::thread::scope(|s| {
        let calls: Vec<_> = containers
            .iter()
            .map(|(h, id, _, path)| {
                let (fleet, conf) = (&fleet, &confs[*h]);
                s.spawn(move || fleet.call(*h, "nicslice-macvlan", "ADD", (id, path), conf))
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    println!("{} CNI ADDs on 2 hosts at once: {:?}", results.len(), started.elapsed());
    for (call, (h, id, _, _)) in results.iter().zip(&containers) {
        assert!(call.ok, "host {h} ADD {id}: {} {}", call.json, call.stderr);
    }
    let handed: Vec<IpAddr> = results.iter().map(|c| ip_of(&c.json)).collect();
    let distinct: BTreeSet<IpAddr> = handed.iter().copied().collect();
    assert_eq!(distinct.len(), handed.len(), "duplicates: {handed:?}");
    assert!(handed.iter().all(|ip| in_range(*ip)), "outside the range: {handed:?}");
    for (call, (_, _, ns, _)) in results.iter().zip(&containers) {
        assert_eq!(call.json["ips"][0]["gateway"], SWITCH);
        let ip = ip_of(&call.json);
        assert_eq!(common::addresses(ns, "eth0"), [format!("{ip}/24")], "the kernel has it");
    }
    // Across the hosts, on the wire: a container of host 0 reaches one of host 1.
    assert!(common::ping(&containers[0].2, &handed[1].to_string()));

    // etcd records each address for its attachment, by host, container and
    // interface (each host's 16th ADD wrote them before it answered).
    let recorded = owners(&fleet, &cluster);
    assert_eq!(recorded.len(), handed.len(), "{recorded:?}");
    let hosts: BTreeSet<&str> =
        recorded.iter().map(|(k, _)| k.split('/').next().unwrap()).collect();
    assert_eq!(hosts.len(), 2, "two hosts' names: {recorded:?}");
    for (key, ip) in &recorded {
        let at = handed.iter().position(|h| h == ip);
        let at = at.unwrap_or_else(|| panic!("{key} records {ip}, which no ADD returned"));
        let id = &containers[at].1;
        assert!(key.ends_with(&format!("/{id}/eth0")), "{key} for {id}");
    }

    // CHECK finds the address; DEL gives it back (the link goes; etcd's
    // owner with the host's next batch); CHECK then fails with code 3; the
    // same container added again gets one. Host 0's notes: its batch
    // emptied them; 1 (the give-back), 2.
    let (h, id, ns, path) = &containers[0];
    let mut check = confs[*h].clone();
    check["prevResult"] = results[0].json.clone();
    let call = fleet.call(*h, "nicslice-macvlan", "CHECK", (id, path), &check);
    assert!(call.ok, "CHECK: {} {}", call.json, call.stderr);
    let call = fleet.call(*h, "nicslice-macvlan", "DEL", (id, path), &confs[*h]);
    assert!(call.ok, "DEL: {} {}", call.json, call.stderr);
    assert!(common::link(ns, "eth0").is_none());
    let call = fleet.call(*h, "nicslice-ipam", "CHECK", (id, path), &confs[*h]);
    assert_eq!((call.ok, call.json["code"].as_u64()), (false, Some(3)), "{}", call.json);
    let again = fleet.call(*h, "nicslice-macvlan", "ADD", (id, path), &confs[*h]);
    assert!(again.ok, "ADD again: {} {}", again.json, again.stderr);
    let ip = ip_of(&again.json);
    assert!(in_range(ip) && !handed[1..].contains(&ip), "{ip} is free and in the range");
    // DEL of what is already gone succeeds, twice.
    for _ in 0..2 {
        let call = fleet.call(*h, "nicslice-ipam", "DEL", ("never-added", ""), &confs[*h]);
        assert!(call.ok, "DEL of nothing: {}", call.json);
    }

    // A third host whose configuration cuts the range in other blocks is
    // refused (it would key the same addresses apart in etcd).
    let other = fleet.conf(2, &cluster, 8);
    let (_, path) = fleet.container("other");
    let call = fleet.call(2, "nicslice-macvlan", "ADD", ("other", &path), &other);
    assert_eq!(call.json["code"].as_u64(), Some(7), "{}", call.json);
    assert!(call.json["msg"].as_str().unwrap().contains("cut in blocks of 4"), "{}", call.json);

    // GC on host 1 keeps half of its attachments and releases the rest
    // (host 1's notes 1 to 8 since its batch).
    let host1: Vec<&(usize, String, Netns, String)> =
        containers.iter().filter(|c| c.0 == 1).collect();
    let (kept, dropped) = host1.split_at(PER_HOST / 2);
    let mut gc = confs[1].clone();
    gc["cni.dev/valid-attachments"] =
        kept.iter().map(|c| json!({"containerID": c.1, "ifname": "eth0"})).collect();
    let call = fleet.call(1, "nicslice-ipam", "GC", ("", ""), &gc);
    assert!(call.ok, "GC: {} {}", call.json, call.stderr);
    for (_, id, _, path) in dropped {
        let call = fleet.call(1, "nicslice-ipam", "CHECK", (id, path), &confs[1]);
        assert_eq!(call.json["code"].as_u64(), Some(3), "{id} released by GC: {}", call.json);
    }
    for (_, id, _, path) in kept {
        let call = fleet.call(1, "nicslice-ipam", "CHECK", (id, path), &confs[1]);
        assert!(call.ok, "{id} kept by GC: {}", call.json);
    }
    // Eight more ADDs on host 1 (notes 9 to 16) take the addresses GC
    // released, and the 16th writes the batch: the give-backs first, so each
    // address ends recorded for its new attachment. etcd then records
    // exactly what host 1's attachments hold.
    let mut held1: Vec<(String, IpAddr)> = kept
        .iter()
        .map(|c| (c.1.clone(), handed[containers.iter().position(|x| x.1 == c.1).unwrap()]))
        .collect();
    for i in 0..dropped.len() {
        let role = format!("again{i}");
        let (_, path) = fleet.container(&role);
        let id = format!("{}-{role}", fleet.world.prefix());
        let call = fleet.call(1, "nicslice-ipam", "ADD", (&id, &path), &confs[1]);
        assert!(call.ok, "ADD {id}: {} {}", call.json, call.stderr);
        held1.push((id, ip_of(&call.json)));
    }
    let reused = held1[kept.len()..]
        .iter()
        .filter(|(_, ip)| dropped_ips(&handed, &containers, dropped).contains(ip))
        .count();
    assert!(reused > 0, "the new attachments reuse what GC released: {held1:?}");
    let host1 = owners(&fleet, &cluster)
        .into_iter()
        .find(|(k, _)| k.contains(&format!("/{}/", kept[0].1)))
        .map(|(k, _)| k.split('/').next().unwrap().to_string())
        .unwrap();
    let mut left: Vec<(String, IpAddr)> = owners(&fleet, &cluster)
        .into_iter()
        .filter(|(k, _)| k.starts_with(&format!("{host1}/")))
        .map(|(k, ip)| (k.split('/').nth(1).unwrap().to_string(), ip))
        .collect();
    left.sort();
    held1.sort();
    assert_eq!(left, held1, "etcd's owners of host 1 are its attachments, and only those");
    for (id, ip) in &held1 {
        let record = address_record(&fleet, &cluster, *ip);
        assert!(record.contains(&format!("/{id}/eth0")), "{ip} recorded for {id}: {record}");
    }

    // An address this host lists as its spare but etcd records for another
    // host (which no host does while this one's lease lives: a host takes
    // back another's addresses only once its lease expired, and a host
    // whose lease expired reads its list back from etcd before it serves)
    // is found by the next batch: the ADD that writes it forgets it and
    // takes another. Host 0's notes: 3 for this DEL, then twelve ADD and
    // DEL pairs of one note each (a DEL of a record not written yet trades
    // its note for a give-back), so that the "late" ADD makes the 16th.
    let (h, id, _, path) = &containers[2];
    let freed = ip_of(&results[2].json);
    let call = fleet.call(*h, "nicslice-macvlan", "DEL", (id, path), &confs[*h]);
    assert!(call.ok, "DEL: {}", call.json);
    let etcd = cluster.client();
    let prefix = b"/nicslice/fleet/fleetnet/addr/";
    let records = fleet.switch.run(|| etcd.get_prefix(prefix)).unwrap().unwrap();
    let key = records
        .into_iter()
        .map(|kv| kv.key)
        .find(|k| k.ends_with(format!("/{freed}").as_bytes()))
        .expect("the freed address's record");
    let intruder = br#"{"host":"intruder"}"#.to_vec();
    let put = Op::Put { key: key.clone(), value: intruder.clone(), lease: None };
    fleet.switch.run(|| etcd.txn(&[], &[put], &[])).unwrap().unwrap();
    for i in 0..12 {
        let role = format!("pad{i}");
        let (_, pad) = fleet.container(&role);
        let add = fleet.call(*h, "nicslice-ipam", "ADD", (&role, &pad), &confs[*h]);
        assert!(add.ok, "ADD {role}: {} {}", add.json, add.stderr);
        let del = fleet.call(*h, "nicslice-ipam", "DEL", (&role, &pad), &confs[*h]);
        assert!(del.ok, "DEL {role}: {} {}", del.json, del.stderr);
    }
    let (_, path) = fleet.container("late");
    // Host 0 has no other spare: the ADD forgets this one and leases a block.
    let host0 = owners(&fleet, &cluster)
        .into_iter()
        .find(|(k, _)| k.contains(&format!("/{}/", containers[4].1)))
        .map(|(k, _)| k.split('/').next().unwrap().to_string())
        .unwrap();
    let blocks_of_host0 = || {
        let blocks = b"/nicslice/fleet/fleetnet/block/";
        let kvs = fleet.switch.run(|| etcd.get_prefix(blocks)).unwrap().unwrap();
        let mine = format!(r#""host":"{host0}""#);
        kvs.iter().filter(|kv| String::from_utf8_lossy(&kv.value).contains(&mine)).count()
    };
    let before = blocks_of_host0();
    let late = fleet.call(*h, "nicslice-macvlan", "ADD", ("late", &path), &confs[*h]);
    assert!(late.ok, "ADD: {} {}", late.json, late.stderr);
    let got = ip_of(&late.json);
    assert_ne!(got, freed, "an address etcd records for another host was handed out");
    assert_eq!(blocks_of_host0(), before + 1, "the spare was tried, forgotten, and a block leased");
    let now = fleet.switch.run(|| etcd.get(&key)).unwrap().unwrap();
    assert_eq!(now, Some(intruder), "the other host's record stays");
}

#[test]
fn add_with_etcd_gone_and_no_spare_fails_with_11_and_leaves_nothing() {
    if in_vm() {
        return;
    }
    let mut fleet = Fleet::new("cnifleetcut", 1);
    let mut cluster = fleet.etcd();
    // Blocks of one address: no spare once the first ADD took it.
    let conf = fleet.conf(0, &cluster, 1);
    let (ns1, path1) = fleet.container("c1");
    let (ns2, path2) = fleet.container("c2");
    let first = fleet.call(0, "nicslice-macvlan", "ADD", ("cut-c1", &path1), &conf);
    assert!(first.ok, "{} {}", first.json, first.stderr);
    cluster.kill(0);

    let started = Instant::now();
    let call = fleet.call(0, "nicslice-macvlan", "ADD", ("cut-c2", &path2), &conf);
    println!("ADD with etcd gone failed after {:?}", started.elapsed());
    assert!(!call.ok, "ADD without etcd and without a spare must fail");
    assert_eq!(call.json["code"].as_u64(), Some(11), "try again later: {}", call.json);
    let msg = call.json["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("etcd") && msg.contains("answer"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(15), "refused in bounded time");
    // Nothing left: no link, no address held; the first attachment intact.
    assert!(common::non_lo(&ns2).is_empty(), "{:?}", common::non_lo(&ns2));
    let check = fleet.call(0, "nicslice-ipam", "CHECK", ("cut-c2", &path2), &conf);
    assert_eq!(check.json["code"].as_u64(), Some(3), "{}", check.json);
    let check = fleet.call(0, "nicslice-ipam", "CHECK", ("cut-c1", &path1), &conf);
    assert!(check.ok, "{}", check.json);
    assert_eq!(common::addresses(&ns1, "eth0"), [format!("{}/24", ip_of(&first.json))]);
    // DEL works without etcd (etcd's record waits for a later allocation here).
    let del = fleet.call(0, "nicslice-macvlan", "DEL", ("cut-c1", &path1), &conf);
    assert!(del.ok, "DEL without etcd: {} {}", del.json, del.stderr);
    assert!(common::link(&ns1, "eth0").is_none());
}

#[test]
fn store_etcd_configurations_are_checked() {
    let fleet = Fleet::new("cnifleetconf", 1);
    let state = fleet.states[0].clone();
    let conf = |etcd: Value, extra: Value| {
        let mut store = json!({"endpoints": ["http://127.0.0.1:1"], "state": state});
        if let (Value::Object(s), Value::Object(e)) = (&mut store, etcd) {
            s.extend(e);
        }
        let mut ipam =
            json!({"type": "nicslice-ipam", "subnet": "10.66.0.0/24", "store": {"etcd": store}});
        if let (Value::Object(i), Value::Object(e)) = (&mut ipam, extra) {
            i.extend(e);
        }
        json!({"cniVersion": "1.1.0", "name": "fleetnet", "type": "nicslice-ipam", "ipam": ipam})
    };
    let mut lmdb = conf(Value::Null, Value::Null);
    lmdb["ipam"]["store"]["lmdb"] = json!({});
    let mut requested = conf(Value::Null, Value::Null);
    requested["args"] = json!({"cni": {"ips": ["10.66.0.9"]}});
    for (conf, needle) in [
        (conf(json!({"endpoints": ["https://10.0.0.1:2379"]}), Value::Null), "needs store.etcd.ca"),
        (conf(json!({"ca": "/etc/etcd/ca.pem"}), Value::Null), "plain HTTP"),
        (
            conf(
                json!({"endpoints": ["https://10.0.0.1:2379"], "ca": "/ca.pem", "cert": "/c.pem"}),
                Value::Null,
            ),
            "come together",
        ),
        (
            conf(json!({"endpoints": ["https://10.0.0.1:2379"], "ca": "ca.pem"}), Value::Null),
            "absolute path",
        ),
        (conf(json!({"blocksize": 4}), Value::Null), "unknown field"),
        (lmdb, "unknown field"),
        (conf(json!({"endpoints": []}), Value::Null), "at least one"),
        (conf(json!({"blockSize": 65}), Value::Null), "1 to 64"),
        (conf(json!({"ttlSeconds": 0}), Value::Null), "at least one second"),
        (conf(Value::Null, json!({"ranges": [[{"subnet": "fd00::/64"}]]})), "exactly one range"),
        (conf(Value::Null, json!({"dhcp": {}})), "exclude each other"),
        (requested, "cannot be requested"),
    ] {
        let call = fleet.call(0, "nicslice-ipam", "ADD", ("conf", "/run/netns/none"), &conf);
        assert_eq!(call.json["code"].as_u64(), Some(7), "{conf}: {}", call.json);
        let msg = call.json["msg"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{conf}: {msg}");
    }
    assert!(!state.exists(), "no configuration error touched the state database");
}

/// Not a timed test: the median of sequential CNI ADDs (nicslice-macvlan
/// with nicslice-ipam in-process) with the fleet pool beside host-local
/// style leases, one host, printed for the report. Blocks of 64 keep the
/// host holding a block for all but the first ADD.
#[test]
fn sequential_adds_with_the_fleet_pool_beside_the_local_lease_book() {
    if in_vm() {
        return;
    }
    let mut fleet = Fleet::new("cnifleetcost", 1);
    let cluster = fleet.etcd();
    let with_fleet = fleet.conf(0, &cluster, 64);
    let mut local = with_fleet.clone();
    let ipam = local["ipam"].as_object_mut().unwrap();
    ipam.remove("store");
    ipam.insert("state".into(), json!(format!("{}.mdb", fleet.states[0].display())));
    ipam.insert("rangeStart".into(), json!("192.168.0.64"));
    ipam.insert("rangeEnd".into(), json!("192.168.0.127"));
    // Interleaved, so that the machine's load weighs on both alike.
    const RUNS: usize = 21;
    let pools = [("fleet", &with_fleet), ("local", &local)];
    let mut times = [Vec::new(), Vec::new()];
    let mut handed = BTreeSet::new();
    for i in 0..RUNS {
        for (p, (label, conf)) in pools.iter().enumerate() {
            let id = format!("{label}{i}");
            let (_, path) = fleet.container(&id);
            let started = Instant::now();
            let call = fleet.call(0, "nicslice-macvlan", "ADD", (&id, &path), conf);
            let took = started.elapsed();
            assert!(call.ok, "{label} ADD {i}: {} {}", call.json, call.stderr);
            assert!(handed.insert(ip_of(&call.json)), "{label}: a duplicate");
            // The first fleet ADD takes the host's lease and a block.
            if i > 0 {
                times[p].push(took);
            }
        }
    }
    let median = |t: &mut Vec<Duration>| {
        t.sort();
        t[t.len() / 2]
    };
    let (fleet_median, local_median) = (median(&mut times[0]), median(&mut times[1]));
    println!(
        "median CNI ADD over {} runs: fleet {fleet_median:?}, local {local_median:?}, ratio {:.2}",
        RUNS - 1,
        fleet_median.as_secs_f64() / local_median.as_secs_f64()
    );
    let _ = std::fs::remove_file(format!("{}.mdb", fleet.states[0].display()));
    let _ = std::fs::remove_file(format!("{}.mdb-lock", fleet.states[0].display()));
}

/// The ADDs, CHECKs and DELs of a host that holds spares make no etcd
/// request (etcd's own request counter stays), and go on with etcd stopped
/// while the host's lease lives; the one that brings the host's notes to 16
/// writes the batch, after which etcd records exactly the attachments the
/// host holds, each address for its latest holder.
#[test]
fn adds_and_dels_holding_spares_make_no_etcd_request_and_every_16th_writes_them_all() {
    if in_vm() {
        return;
    }
    let mut fleet = Fleet::new("cnifleetbatch", 1);
    let mut cluster = fleet.etcd();
    let conf = fleet.conf(0, &cluster, 16);
    let mut held: Vec<(String, IpAddr)> = Vec::new();
    let add = |fleet: &mut Fleet, held: &mut Vec<(String, IpAddr)>, id: &str| {
        let (_, path) = fleet.container(id);
        let call = fleet.call(0, "nicslice-ipam", "ADD", (id, &path), &conf);
        assert!(call.ok, "ADD {id}: {} {}", call.json, call.stderr);
        held.push((id.to_string(), ip_of(&call.json)));
    };
    let del = |fleet: &Fleet, held: &mut Vec<(String, IpAddr)>, id: &str| {
        let started = Instant::now();
        let call = fleet.call(0, "nicslice-ipam", "DEL", (id, ""), &conf);
        assert!(call.ok, "DEL {id}: {} {}", call.json, call.stderr);
        held.retain(|(h, _)| h != id);
        started.elapsed()
    };
    // Note 1: the host's lease and a block of 16 (etcd is asked).
    add(&mut fleet, &mut held, "b0");
    let before = cluster.requests(&fleet.switch);
    for i in 1..6 {
        add(&mut fleet, &mut held, &format!("b{i}"));
    }
    let netns = |fleet: &Fleet, id: &str| format!("/run/netns/{}", fleet.world.name_of(id));
    let check = fleet.call(0, "nicslice-ipam", "CHECK", ("b1", &netns(&fleet, "b1")), &conf);
    assert!(check.ok, "CHECK: {}", check.json);
    let ip_of_held = |held: &[(String, IpAddr)], id: &str| {
        held.iter().find(|(h, _)| h == id).map(|(_, ip)| *ip).unwrap()
    };
    let mut released = vec![ip_of_held(&held, "b2"), ip_of_held(&held, "b3")];
    del(&fleet, &mut held, "b2");
    // b2's record was never written: its note became a give-back (6 notes).
    assert_eq!(cluster.requests(&fleet.switch), before, "notes 2 to 6 asked etcd nothing");
    assert!(owners(&fleet, &cluster).is_empty(), "nothing written yet");

    // etcd stopped (a request would wait for its timeout): ADD, CHECK and
    // DEL still answer at once (note 7, and b3's traded).
    cluster.pause(0);
    let started = Instant::now();
    add(&mut fleet, &mut held, "b6");
    let add_took = started.elapsed();
    let check = fleet.call(0, "nicslice-ipam", "CHECK", ("b6", &netns(&fleet, "b6")), &conf);
    assert!(check.ok, "CHECK with etcd stopped: {}", check.json);
    let del_took = del(&fleet, &mut held, "b3");
    cluster.resume(0);
    released.sort();
    println!("with etcd stopped: ADD {add_took:?}, DEL {del_took:?}");
    assert!(add_took < Duration::from_millis(900), "the ADD waited for etcd: {add_took:?}");
    assert!(del_took < Duration::from_millis(900), "the DEL waited for etcd: {del_took:?}");

    // Notes 8 to 16: the 16th writes them all; the addresses released
    // were handed out again before it, and end recorded for their new holders.
    for i in 7..16 {
        add(&mut fleet, &mut held, &format!("b{i}"));
    }
    assert!(cluster.requests(&fleet.switch) > before, "the 16th note wrote the batch");
    assert_recorded_as_held(&fleet, &cluster, &held);
    for ip in &released {
        assert!(held.iter().any(|(_, h)| h == ip), "{ip} handed out again");
    }

    // A DEL with etcd stopped (note 1 after the batch), and an ADD (2) that
    // its DEL gave back: the give-backs land with the next batch (note 16).
    cluster.pause(0);
    let gone = held[1].clone();
    del(&fleet, &mut held, &gone.0);
    cluster.resume(0);
    add(&mut fleet, &mut held, "c0");
    del(&fleet, &mut held, "c0");
    let recorded = owners(&fleet, &cluster);
    assert!(recorded.iter().any(|(k, _)| k.contains(&format!("/{}/", gone.0))), "not yet");
    for i in 1..15 {
        add(&mut fleet, &mut held, &format!("c{i}"));
    }
    assert_recorded_as_held(&fleet, &cluster, &held);
    assert!(held.iter().any(|(_, ip)| *ip == gone.1), "{} was handed out again", gone.1);
}

/// etcd's CNI owners are exactly `held` (container ID, address), and each
/// address's record names its holder.
fn assert_recorded_as_held(fleet: &Fleet, cluster: &Cluster, held: &[(String, IpAddr)]) {
    let mut recorded: Vec<(String, IpAddr)> = owners(fleet, cluster)
        .into_iter()
        .map(|(k, ip)| (k.split('/').nth(1).unwrap().to_string(), ip))
        .collect();
    recorded.sort();
    let mut held = held.to_vec();
    held.sort();
    assert_eq!(recorded, held, "etcd's owners are the attachments held");
    for (id, ip) in &held {
        let record = address_record(fleet, cluster, *ip);
        assert!(record.contains(&format!("/{id}/eth0")), "{ip} recorded for {id}: {record}");
    }
}

/// A configuration narrowed (`rangeStart`/`rangeEnd`) after the host leased
/// a block hands out only its spares inside the new range; those outside
/// stay this host's, and the wider configuration hands them out again.
#[test]
fn a_narrowed_range_hands_out_only_the_spares_inside_it() {
    if in_vm() {
        return;
    }
    let mut fleet = Fleet::new("cnifleetnarrow", 1);
    let cluster = fleet.etcd();
    let wide = fleet.conf(0, &cluster, 16);
    let mut narrow = wide.clone();
    narrow["ipam"]["rangeStart"] = json!("192.168.0.136");
    narrow["ipam"]["rangeEnd"] = json!("192.168.0.139");
    let inside = |ip: IpAddr| {
        ip >= "192.168.0.136".parse::<IpAddr>().unwrap()
            && ip <= "192.168.0.139".parse::<IpAddr>().unwrap()
    };
    let add = |fleet: &mut Fleet, id: &str, conf: &Value| {
        let (_, path) = fleet.container(id);
        let call = fleet.call(0, "nicslice-ipam", "ADD", (id, &path), conf);
        (call.ok, call.json, call.stderr)
    };
    // The wide range leases the block 128-143 and hands out its first.
    let (ok, first, err) = add(&mut fleet, "w0", &wide);
    assert!(ok, "{first} {err}");
    assert_eq!(ip_of(&first).to_string(), "192.168.0.128");
    let (ok, second, err) = add(&mut fleet, "w1", &wide);
    assert!(ok, "{second} {err}");
    // Released, 128 is the lowest spare again: the narrow range skips it.
    let del = fleet.call(0, "nicslice-ipam", "DEL", ("w0", ""), &wide);
    assert!(del.ok, "{}", del.json);
    let mut got = Vec::new();
    for i in 0..4 {
        let (ok, json, err) = add(&mut fleet, &format!("n{i}"), &narrow);
        assert!(ok, "narrow ADD {i}: {json} {err}");
        got.push(ip_of(&json));
    }
    assert!(got.iter().all(|ip| inside(*ip)), "inside 136-139 only: {got:?}");
    // The narrow range has no spare left, and its cut differs from etcd's:
    // refused, rather than handing out a spare outside it.
    let (ok, json, _) = add(&mut fleet, "n4", &narrow);
    assert!(!ok, "no spare left inside the narrow range: {json}");
    // The wide configuration again: the spares outside stayed this host's.
    let (ok, json, err) = add(&mut fleet, "w2", &wide);
    assert!(ok, "{json} {err}");
    assert_eq!(ip_of(&json).to_string(), "192.168.0.128", "the spare kept outside");
}

/// With `"probe"`, an address of the fleet pool that someone on the wire
/// answers for is quarantined (kept by this host, not handed out again)
/// and the ADD takes the next spare instead, as the CLI's fleet network does.
#[test]
fn an_answered_address_is_quarantined_and_the_add_takes_the_next_spare() {
    if in_vm() {
        return;
    }
    let mut fleet = Fleet::new("cnifleetprobe", 1);
    let cluster = fleet.etcd();
    let mut conf = fleet.conf(0, &cluster, 16);
    conf["probe"] = json!({"timeoutMs": 300, "cooldownSeconds": 600});
    let add = |fleet: &mut Fleet, id: &str| -> (IpAddr, Netns, String) {
        let (ns, path) = fleet.container(id);
        let call = fleet.call(0, "nicslice-macvlan", "ADD", (id, &path), &conf);
        assert!(call.ok, "ADD {id}: {} {}", call.json, call.stderr);
        (ip_of(&call.json), ns, path)
    };
    let (first, _p0, _) = add(&mut fleet, "p0");
    let IpAddr::V4(v4) = first else { panic!("IPv4 range") };
    let nth = |n: u32| IpAddr::V4(std::net::Ipv4Addr::from(u32::from(v4) + n));

    // A host nicslice does not manage answers for the next spare.
    let foreign = fleet
        .world
        .host(&fleet.switch, "foreign", "eth0", Some(format!("{}/24", nth(1)).parse().unwrap()))
        .unwrap();
    let (second, p1, p1_path) = add(&mut fleet, "p1");
    assert_eq!(second, nth(2), "the answered {} is skipped for the next spare", nth(1));
    assert_eq!(
        common::addresses(&p1, "eth0"),
        [format!("{second}/24")],
        "the container holds the replacement, not the answered address"
    );

    // Quarantined: once its answerer is gone, it is still not handed out
    // (the cool-down is 600 s), and it is not the container's.
    let mut sock = nicslice_kernel::RouteSocket::open_in(&foreign.netns).unwrap();
    let eth0 = sock.require_link("eth0", "foreign").unwrap();
    sock.set_up(eth0.index, false).unwrap();
    assert_eq!(add(&mut fleet, "p2").0, nth(3), "the quarantined address is not handed out");
    let check = fleet.call(0, "nicslice-ipam", "CHECK", ("p1", &p1_path), &conf);
    assert!(check.ok, "CHECK p1: {} {}", check.json, check.stderr);
}
