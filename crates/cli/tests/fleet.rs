//! The fleet pool's foundation (issue 14, part 2) against real etcd 3.4
//! processes: a three-member cluster on 127.0.0.1 inside a namespace the
//! test makes, several hosts sharing one range. Needs Debian's etcd-server
//! (`apt-get install etcd-server`; /usr/bin/etcd).

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nicslice_kernel::Netns;
use nicslice_lab::World;
use nicslice_store::fleet::etcd::Etcd;
use nicslice_store::fleet::{FleetConfig, FleetHost};

/// The fleet pool speaks etcd's protocol and nothing of the kernel's: it
/// runs on the host, not in the VM stage (whose image carries no etcd).
fn in_vm() -> bool {
    let vm = std::env::var_os("NICSLICE_VM").is_some();
    if vm {
        println!("kernel-independent: runs on the host stage only");
    }
    vm
}

/// A cluster of etcd members in namespace `netns`, killed (by the pids we
/// started) and its data removed when dropped.
struct Cluster {
    members: Vec<Option<Child>>,
    dir: PathBuf,
    clients: Vec<String>,
}

impl Cluster {
    fn start(netns: &str, size: u16) -> Cluster {
        assert!(
            std::path::Path::new("/usr/bin/etcd").exists(),
            "these tests need Debian's etcd-server (apt-get install etcd-server)"
        );
        let dir = std::env::temp_dir().join(format!("{netns}-etcd"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let peer = |i: u16| format!("http://127.0.0.1:{}", 2380 + 10 * i);
        let client = |i: u16| format!("http://127.0.0.1:{}", 2379 + 10 * i);
        let cluster: Vec<String> = (0..size).map(|i| format!("m{i}={}", peer(i))).collect();
        let members = (0..size)
            .map(|i| {
                let log = std::fs::File::create(dir.join(format!("m{i}.log"))).unwrap();
                Some(
                    Command::new("ip")
                        .args(["netns", "exec", netns, "/usr/bin/etcd", "--name", &format!("m{i}")])
                        .arg("--data-dir")
                        .arg(dir.join(format!("m{i}")))
                        .args([
                            "--listen-client-urls",
                            &client(i),
                            "--advertise-client-urls",
                            &client(i),
                        ])
                        .args([
                            "--listen-peer-urls",
                            &peer(i),
                            "--initial-advertise-peer-urls",
                            &peer(i),
                        ])
                        .args([
                            "--initial-cluster",
                            &cluster.join(","),
                            "--initial-cluster-state",
                            "new",
                        ])
                        .stdout(Stdio::null())
                        .stderr(log)
                        .spawn()
                        .expect("start etcd"),
                )
            })
            .collect();
        Cluster { members, dir, clients: (0..size).map(client).collect() }
    }

    /// Kills member `i` (SIGKILL, by its pid).
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A client that waits out an election (5 s).
fn client(cluster: &Cluster) -> Etcd {
    Etcd::new(&cluster.clients, Duration::from_millis(500), Duration::from_secs(5)).unwrap()
}

/// A client that gives up at once: a host cut off.
fn impatient(cluster: &Cluster) -> Etcd {
    Etcd::new(&cluster.clients, Duration::from_millis(200), Duration::ZERO).unwrap()
}

/// Waits (at most 20 s) until the cluster grants a lease.
fn wait_ready(cluster: &Cluster) {
    let etcd = client(cluster);
    let deadline = Instant::now() + Duration::from_secs(20);
    while etcd.grant(Duration::from_secs(5)).is_err() {
        assert!(
            Instant::now() < deadline,
            "etcd did not come up; logs in {}",
            cluster.dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn conf(ttl: Duration) -> FleetConfig {
    FleetConfig {
        network: "fleet".into(),
        first: "10.7.0.0".parse().unwrap(),
        last: "10.7.0.63".parse().unwrap(),
        block_size: 8,
        ttl,
    }
}

fn namespace(world: &mut World) -> (Netns, String) {
    let ns = world.netns("etcd").unwrap();
    (ns, world.name_of("etcd"))
}

#[test]
fn hosts_share_a_range_without_duplicates_and_a_dead_member_changes_nothing() {
    if in_vm() {
        return;
    }
    let mut world = World::new("fleet1");
    let (ns, name) = namespace(&mut world);
    let mut cluster = Cluster::start(&name, 3);
    let _inside = ns.enter().unwrap();
    wait_ready(&cluster);

    let mut hosts: Vec<FleetHost> = (0..3)
        .map(|h| {
            FleetHost::new(client(&cluster), conf(Duration::from_secs(30)), &format!("host{h}"))
        })
        .collect();
    let mut given: Vec<IpAddr> = Vec::new();
    for n in 0..48 {
        if n == 24 {
            // The leader: its followers hold an election first.
            let leader = (0..3).find(|&i| {
                let one =
                    Etcd::new(&cluster.clients[i..=i], Duration::from_millis(500), Duration::ZERO);
                one.unwrap().answered_by_leader().unwrap_or(false)
            });
            cluster.kill(leader.expect("a leader"));
        }
        let h = n % 3;
        given.push(hosts[h].allocate(&format!("c{n}")).unwrap());
    }
    let mut distinct = given.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), given.len(), "duplicates in {given:?}");
    // Each host's addresses lie in its own blocks, and no block is held twice.
    let mut blocks: Vec<(IpAddr, IpAddr)> =
        hosts.iter().flat_map(|h| h.blocks().unwrap()).collect();
    let held = blocks.len();
    blocks.sort();
    blocks.dedup();
    assert_eq!(blocks.len(), held, "a block held twice: {blocks:?}");
    assert_eq!(held, 6, "48 addresses in blocks of 8, each host filling its own: {blocks:?}");

    // A released address is reused by its host.
    hosts[0].release(given[0], "c0").unwrap();
    assert_eq!(hosts[0].allocate("again").unwrap(), given[0]);
}

#[test]
fn a_host_cut_off_serves_from_its_blocks_until_they_expire_then_refuses() {
    if in_vm() {
        return;
    }
    let mut world = World::new("fleet2");
    let (ns, name) = namespace(&mut world);
    let mut cluster = Cluster::start(&name, 1);
    let _inside = ns.enter().unwrap();
    wait_ready(&cluster);

    let ttl = Duration::from_secs(3);
    let mut a = FleetHost::new(impatient(&cluster), conf(ttl), "a");
    let first = a.allocate("c0").unwrap();
    let cut = Instant::now();
    cluster.kill(0);
    // Within the lease: from its block, no etcd needed.
    let second = a.allocate("c1").unwrap();
    assert_ne!(first, second);
    assert_eq!(a.blocks().unwrap().len(), 1);
    // Past it: refused, never an address another host could now hold.
    std::thread::sleep(ttl.saturating_sub(cut.elapsed()) + Duration::from_millis(100));
    let err = a.allocate("c2").unwrap_err().to_string();
    assert!(err.contains("cut off from etcd"), "{err}");
    assert!(a.blocks().unwrap().is_empty());
}

#[test]
fn a_dead_hosts_block_is_taken_over_but_its_addresses_in_use_are_skipped() {
    if in_vm() {
        return;
    }
    let mut world = World::new("fleet3");
    let (ns, name) = namespace(&mut world);
    let cluster = Cluster::start(&name, 1);
    let _inside = ns.enter().unwrap();
    wait_ready(&cluster);

    let ttl = Duration::from_secs(2);
    let mut dead = FleetHost::new(client(&cluster), conf(ttl), "dead");
    let theirs = [dead.allocate("x").unwrap(), dead.allocate("y").unwrap()];
    drop(dead); // never renewed again: its block goes after the TTL
    std::thread::sleep(ttl + Duration::from_millis(1500));
    let mut b = FleetHost::new(client(&cluster), conf(Duration::from_secs(30)), "b");
    let mine: Vec<IpAddr> = (0..6).map(|i| b.allocate(&format!("b{i}")).unwrap()).collect();
    assert_eq!(b.blocks().unwrap()[0].0, theirs[0], "the freed block is taken first");
    assert!(!mine.iter().any(|ip| theirs.contains(ip)), "{mine:?} reuses {theirs:?}");
}
