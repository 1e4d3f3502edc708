//! etcd 3.4 clusters for the fleet tests (fleet.rs, cni_fleet.rs): real
//! etcd processes started inside a namespace the test made, on fixed ports
//! of an address of that namespace, so they never bind on the runner's own
//! interfaces. Needs Debian's etcd-server (`apt-get install etcd-server`;
//! /usr/bin/etcd).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nicslice_kernel::Netns;
use nicslice_store::fleet::etcd::Etcd;

/// The fleet pool speaks etcd's protocol and nothing of the kernel's: it
/// runs on the host, not in the VM stage (whose image carries no etcd).
pub fn in_vm() -> bool {
    let vm = std::env::var_os("NICSLICE_VM").is_some();
    if vm {
        println!("kernel-independent: runs on the host stage only");
    }
    vm
}

/// Tests start clusters on fixed ports of their own namespaces; they may
/// run side by side, as each namespace has its own addresses.
pub struct Cluster {
    members: Vec<Option<Child>>,
    dir: PathBuf,
    pub clients: Vec<String>,
}

impl Cluster {
    /// `size` members on 127.0.0.1 of namespace `netns`.
    pub fn start(etcd_ns: &Netns, netns: &str, size: u16) -> Cluster {
        Cluster::start_on(etcd_ns, netns, size, "127.0.0.1")
    }

    /// `size` members on `ip` (an address of namespace `netns`), their data
    /// under a directory of their own; waits (at most 20 s) until the
    /// cluster grants a lease.
    pub fn start_on(etcd_ns: &Netns, netns: &str, size: u16, ip: &str) -> Cluster {
        assert!(
            std::path::Path::new("/usr/bin/etcd").exists(),
            "these tests need Debian's etcd-server (apt-get install etcd-server)"
        );
        let dir = std::env::temp_dir().join(format!("{netns}-etcd"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let peer = |i: u16| format!("http://{ip}:{}", 2380 + 10 * i);
        let client = |i: u16| format!("http://{ip}:{}", 2379 + 10 * i);
        let cluster: Vec<String> = (0..size).map(|i| format!("m{i}={}", peer(i))).collect();
        let members = (0..size)
            .map(|i| {
                let log = std::fs::File::create(dir.join(format!("m{i}.log"))).unwrap();
                let mut cmd = Command::new("ip");
                cmd.args(["netns", "exec", netns, "/usr/bin/etcd", "--name", &format!("m{i}")])
                    .arg("--data-dir")
                    .arg(dir.join(format!("m{i}")))
                    .args(["--listen-client-urls", &client(i)])
                    .args(["--advertise-client-urls", &client(i)])
                    .args(["--listen-peer-urls", &peer(i)])
                    .args(["--initial-advertise-peer-urls", &peer(i)])
                    .args(["--initial-cluster", &cluster.join(",")])
                    .args(["--initial-cluster-state", "new"])
                    .stdout(Stdio::null())
                    .stderr(log);
                Some(cmd.spawn().expect("start etcd"))
            })
            .collect();
        let cluster = Cluster { members, dir, clients: (0..size).map(client).collect() };
        let deadline = Instant::now() + Duration::from_secs(20);
        let etcd = cluster.client();
        while etcd_ns.run(|| etcd.grant(Duration::from_secs(5))).unwrap().is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not come up; logs in {}",
                cluster.dir.display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// A client of the whole cluster that tries each member once.
    pub fn client(&self) -> Etcd {
        Etcd::new(&self.clients, Duration::from_millis(500), Duration::ZERO).unwrap()
    }

    /// Kills member `i` (SIGKILL, by the pid we started: `ip netns exec`
    /// execs etcd in its own process).
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops member `i` (SIGSTOP, by the pid we started): it keeps its
    /// port, and a request to it waits for its timeout.
    pub fn pause(&mut self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// Lets member `i` go on after [`pause`](Self::pause).
    pub fn resume(&mut self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    fn signal(&mut self, i: usize, signal: libc::c_int) {
        let child = self.members[i].as_ref().expect("a running member");
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        // SAFETY: a signal to the pid of a child we started and did not reap.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// How many gRPC requests (the JSON gateway's included) the members
    /// have started serving, by their own metrics (`/metrics`), read from
    /// namespace `etcd_ns`.
    pub fn requests(&self, etcd_ns: &Netns) -> u64 {
        self.clients
            .iter()
            .map(|url| {
                let metrics = etcd_ns.run(|| http_get(url, "/metrics")).unwrap();
                metrics
                    .lines()
                    .filter(|l| l.starts_with("grpc_server_started_total{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>() as u64
            })
            .sum()
    }

    /// The member that is the cluster's leader now.
    pub fn leader(&self, etcd_ns: &Netns) -> usize {
        (0..self.clients.len())
            .find(|&i| {
                let one =
                    Etcd::new(&self.clients[i..=i], Duration::from_millis(500), Duration::ZERO)
                        .unwrap();
                etcd_ns.run(|| one.answered_by_leader().unwrap_or(false)).unwrap()
            })
            .expect("a leader")
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

/// The body of a plain HTTP GET of `path` at `url` (`http://IP:PORT`).
fn http_get(url: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let authority = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(authority).expect("connect to etcd");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {authority}\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("etcd's reply");
    reply.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or_default()
}
