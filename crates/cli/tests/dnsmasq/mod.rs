//! A real DHCP server for the DHCP tests: dnsmasq started by the test inside
//! a namespace of its world (the switch, serving 192.168.0.0/24 on br0),
//! DNS off, its lease file and log in a temporary directory, stopped by the
//! pid the test started. Used by `dhcp.rs` and, in the VM, `vm_dhcp.rs`.

#![allow(dead_code)]

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nicslice_kernel::Netns;

pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";

/// dnsmasq in a test's namespace, killed (by its pid) when dropped.
pub struct Dnsmasq {
    child: Child,
    dir: PathBuf,
}

impl Dnsmasq {
    /// Serves 192.168.0.100-149 (120 s leases, router 192.168.0.1, DNS
    /// server 192.168.0.53) on br0 of `switch`, or returns `None` when
    /// dnsmasq is not installed (a failure under NICSLICE_REQUIRE_DNSMASQ=1,
    /// as scripts/test.sh sets).
    pub fn start(switch: &Netns, tag: &str) -> Option<Dnsmasq> {
        Dnsmasq::start_range(switch, tag, "192.168.0.100,192.168.0.149")
    }

    /// The same, handing out addresses from `range` ("FIRST,LAST").
    pub fn start_range(switch: &Netns, tag: &str, range: &str) -> Option<Dnsmasq> {
        Dnsmasq::start_with(switch, tag, range, &[])
    }

    /// [`start`](Self::start), and DHCPv6 too: br0 gets fd00:db8::1/64 and
    /// the server hands out fd00:db8::100-1ff (120 s leases, the shortest
    /// dnsmasq gives) with DNS server fd00:db8::53, and sends Router
    /// Advertisements (managed flag, the prefix on-link, itself the default
    /// router).
    pub fn start_v6(switch: &Netns, tag: &str) -> Option<Dnsmasq> {
        let mut sock = nicslice_kernel::RouteSocket::open_in(switch).unwrap();
        let br0 = sock.require_link("br0", "switch").unwrap();
        let addr = "fd00:db8::1/64".parse().unwrap();
        if !sock.addresses(Some(br0.index)).unwrap().iter().any(|(_, a)| *a == addr) {
            sock.add_address(br0.index, addr).unwrap();
        }
        let v6 = [
            "--dhcp-range=fd00:db8::100,fd00:db8::1ff,64,120",
            "--dhcp-option=option6:dns-server,[fd00:db8::53]",
            "--enable-ra",
        ];
        Dnsmasq::start_with(switch, tag, "192.168.0.100,192.168.0.149", &v6)
    }

    /// [`start_range`](Self::start_range), with dnsmasq's `extra` options besides.
    pub fn start_with(switch: &Netns, tag: &str, range: &str, extra: &[&str]) -> Option<Dnsmasq> {
        if !Path::new(DNSMASQ).exists() {
            assert!(
                std::env::var_os("NICSLICE_REQUIRE_DNSMASQ").is_none(),
                "dnsmasq is required (apt-get install dnsmasq-base)"
            );
            eprintln!("skipping: dnsmasq is not installed (apt-get install dnsmasq-base)");
            return None;
        }
        let dir = std::env::temp_dir().join(format!("nsl-dnsmasq-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let leases = dir.join("leases");
        let log = dir.join("log");
        let netns = switch.as_raw_fd();
        let mut cmd = Command::new(DNSMASQ);
        cmd.arg("--keep-in-foreground")
            .args(["--conf-file=/dev/null", "--port=0", "--no-hosts", "--no-resolv"])
            .args(["--interface=br0", "--bind-interfaces", "--user=root", "--group=root"])
            .arg(format!("--dhcp-range={range},255.255.255.0,120"))
            .arg("--dhcp-option=option:router,192.168.0.1")
            .arg("--dhcp-option=option:dns-server,192.168.0.53")
            .args(["--dhcp-authoritative", "--no-ping", "--log-dhcp", "--pid-file="])
            .arg(format!("--dhcp-leasefile={}", leases.display()))
            .arg(format!("--log-facility={}", log.display()))
            .args(extra)
            .stdin(Stdio::null());
        // SAFETY: between fork and exec only setns(2) runs, on a descriptor
        // the parent holds open (the switch's namespace file).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(netns, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start dnsmasq");
        let server = Dnsmasq { child, dir };
        // Ready once it has written its (empty) lease file.
        let deadline = Instant::now() + Duration::from_secs(20);
        while !leases.exists() {
            assert!(Instant::now() < deadline, "dnsmasq did not start: {}", server.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(server)
    }

    /// The server's lease file: one line per lease,
    /// `EXPIRY MAC IP HOSTNAME CLIENT-ID`, and for DHCPv6 (after a line
    /// `duid SERVER-DUID`) `EXPIRY IAID IP HOSTNAME CLIENT-DUID`.
    /// dnsmasq rewrites the file in place (truncate, then write), so a read
    /// can catch it empty or half written: two reads 5 ms apart must agree.
    pub fn leases(&self) -> Vec<Vec<String>> {
        let read = || std::fs::read_to_string(self.dir.join("leases")).unwrap_or_default();
        let mut text = read();
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(5));
            let again = read();
            if again == text {
                break;
            }
            text = again;
        }
        text.lines().map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
    }

    pub fn has_lease(&self, ip: &str) -> bool {
        self.leases().iter().any(|l| l.get(2).map(String::as_str) == Some(ip))
    }

    /// Waits (at most 3 s) for the lease file to drop `ip`.
    pub fn released(&self, ip: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(3);
        while self.has_lease(ip) {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// The server's DHCPv6 lease line of `ip`: `EXPIRY IAID IP HOSTNAME
    /// DUID` (waiting at most 3 s: dnsmasq rewrites its file in place).
    pub fn v6_lease(&self, ip: &str) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let line = self.leases().into_iter().find(|l| l.get(2).map(String::as_str) == Some(ip));
            match line {
                Some(line) => return line,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                None => panic!(
                    "no lease of {ip} in the server's file: {:?}\n{}",
                    self.leases(),
                    self.log()
                ),
            }
        }
    }

    /// The server's expiry time of the lease of `ip` (the lease file's first field).
    pub fn expiry(&self, ip: &str) -> i64 {
        let leases = self.leases();
        let line = leases
            .iter()
            .find(|l| l.get(2).is_some_and(|a| a == ip))
            .expect("lease in the server's file");
        line[0].parse().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        // By the pid this test started, never by name.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The single IPv4 address of an endpoint view, without its prefix.
pub fn ip_of(view: &serde_json::Value) -> String {
    let a = view["addresses"].as_array().expect("addresses");
    assert_eq!(a.len(), 1, "one DHCP address: {view}");
    a[0].as_str().unwrap().split('/').next().unwrap().to_string()
}

/// Waits (at most `limit`) for `ns` to have a route that `found` accepts
/// (the routes a Router Advertisement gives come a moment after the link).
pub fn wait_route(
    ns: &Netns,
    limit: Duration,
    found: impl Fn(&nicslice_kernel::Route) -> bool,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let routes = nicslice_kernel::RouteSocket::open_in(ns).unwrap().routes().unwrap();
        if routes.iter().any(&found) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// On drop, removes the resolv.conf files nicslice wrote under /etc/netns
/// for a test's namespaces (those named PREFIX-...), so that a test that
/// fails before its detach leaves nothing there either.
pub struct EtcNetns(pub String);

impl Drop for EtcNetns {
    fn drop(&mut self) {
        let Ok(dirs) = std::fs::read_dir("/etc/netns") else { return };
        for dir in dirs.flatten() {
            if !dir.file_name().to_string_lossy().starts_with(&format!("{}-", self.0)) {
                continue;
            }
            let file = dir.path().join("resolv.conf");
            let ours = std::fs::read_to_string(&file)
                .is_ok_and(|t| t.starts_with("# written by nicslice"));
            if ours {
                let _ = std::fs::remove_file(&file);
                let _ = std::fs::remove_dir(dir.path());
            }
        }
    }
}
