//! TLS to etcd (`--ipam etcd` with https:// URLs, issue 14) through the
//! CLI, against a real etcd 3.4 started with client certificate
//! authentication (`--client-cert-auth`) on 127.0.0.1 inside a namespace the
//! test makes. The certificates are made here with the `openssl` command: a
//! CA, etcd's server certificate for 127.0.0.1, a client certificate for
//! the host, and a second CA that signed none of them. nicslice runs in
//! etcd's namespace (to reach its 127.0.0.1) with `--host-netns` naming the
//! host whose parent it uses. Needs Debian's etcd-server and openssl.

mod common;
mod etcd;

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use etcd::in_vm;
use nicslice_kernel::{Netns, RouteSocket};
use nicslice_lab::{Host, World};
use nicslice_model::EtcdTls;
use nicslice_store::fleet::etcd::Etcd;

const URL: &str = "https://127.0.0.1:2379";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl").current_dir(dir).args(args).output().expect(
        "these tests need the openssl command (apt-get install openssl) to make certificates",
    );
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A directory of PEM files: `ca.pem` (with `ca.key`), `server.pem`/`.key`
/// (etcd, for IP 127.0.0.1), `client.pem`/`.key` (the host), and
/// `other-ca.pem`, a CA that signed neither, only `stranger.pem`/`.key`.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make(dir: PathBuf) -> Certificates {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
        for ca in ["ca", "other-ca"] {
            let (key, pem, subject) =
                (format!("{ca}.key"), format!("{ca}.pem"), format!("/CN={ca}"));
            let mut args = vec!["req", "-x509", "-days", "2", "-subj", &subject];
            args.extend_from_slice(&ec);
            args.extend_from_slice(&["-keyout", &key, "-out", &pem]);
            openssl(&dir, &args);
        }
        // etcd 3.4's JSON gateway dials etcd's own gRPC port with the
        // server certificate as its client certificate: both usages.
        let leaves = [
            (
                "server",
                "ca",
                "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
            ),
            ("client", "ca", "extendedKeyUsage=clientAuth\n"),
            ("stranger", "other-ca", "extendedKeyUsage=clientAuth\n"),
        ];
        for (leaf, signer, extensions) in leaves {
            let (key, csr, pem) =
                (format!("{leaf}.key"), format!("{leaf}.csr"), format!("{leaf}.pem"));
            let (ext, subject) = (format!("{leaf}.ext"), format!("/CN=nicslice-{leaf}"));
            std::fs::write(dir.join(&ext), extensions).unwrap();
            let mut args = vec!["req", "-subj", &subject];
            args.extend_from_slice(&ec);
            args.extend_from_slice(&["-keyout", &key, "-out", &csr]);
            openssl(&dir, &args);
            let (signer_pem, signer_key) = (format!("{signer}.pem"), format!("{signer}.key"));
            let mut args = vec!["x509", "-req", "-days", "2", "-in", &csr, "-out", &pem];
            args.extend_from_slice(&["-CA", &signer_pem, "-CAkey", &signer_key]);
            args.extend_from_slice(&["-CAcreateserial", "-extfile", &ext]);
            openssl(&dir, &args);
        }
        Certificates { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One etcd member serving clients over TLS only, with client certificates
/// required; its data beside the certificates.
struct Member {
    child: Child,
}

impl Member {
    fn start(etcd_ns: &Netns, netns: &str, certs: &Certificates) -> Member {
        assert!(
            Path::new("/usr/bin/etcd").exists(),
            "these tests need Debian's etcd-server (apt-get install etcd-server)"
        );
        let log = std::fs::File::create(certs.dir.join("etcd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", netns, "/usr/bin/etcd", "--name", "m0"])
            .args(["--data-dir", &certs.path("data")])
            .args(["--listen-client-urls", URL, "--advertise-client-urls", URL])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "m0=http://127.0.0.1:2380"])
            .args(["--cert-file", &certs.path("server.pem")])
            .args(["--key-file", &certs.path("server.key")])
            .args(["--trusted-ca-file", &certs.path("ca.pem"), "--client-cert-auth"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        let member = Member { child };
        // Up when it grants a lease to a client with the right certificates.
        let tls = EtcdTls {
            ca: Some(certs.dir.join("ca.pem")),
            cert: Some(certs.dir.join("client.pem")),
            key: Some(certs.dir.join("client.key")),
        };
        let etcd =
            Etcd::with_tls(&[URL.to_string()], &tls, Duration::from_millis(500), Duration::ZERO)
                .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while let Err(e) = etcd_ns.run(|| etcd.grant(Duration::from_secs(5))).unwrap() {
            assert!(
                Instant::now() < deadline,
                "etcd did not come up ({e}); log in {}",
                certs.dir.join("etcd.log").display()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        member
    }
}

impl Drop for Member {
    /// SIGKILL by the pid we started (`ip netns exec` execs etcd itself).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host (a namespace whose parent `eth0` is a veth into a switch), a
/// namespace for its endpoints, etcd's namespace, and a state database.
struct Lab {
    _world: World,
    _switch: Netns,
    host: Host,
    etcd_ns: Netns,
    etcd_name: String,
    kid: (Netns, String),
    state: PathBuf,
    /// The last 10.79.N.0/24 given to a create.
    subnets: std::cell::Cell<u8>,
}

impl Lab {
    fn new(tag: &str) -> Lab {
        let mut world = World::new(tag);
        let switch = world.switch(None).unwrap();
        let etcd_ns = world.netns("etcd").unwrap();
        let etcd_name = world.name_of("etcd");
        let host = world.host(&switch, "h0", "eth0", None).unwrap();
        let kid = (world.netns("kid").unwrap(), world.name_of("kid"));
        let state = std::env::temp_dir().join(format!("{}.db", world.prefix()));
        Lab {
            _world: world,
            _switch: switch,
            host,
            etcd_ns,
            etcd_name,
            kid,
            state,
            subnets: std::cell::Cell::new(0),
        }
    }

    /// `nicslice ARGS` for the host, run in etcd's namespace, with none of
    /// the caller's NICSLICE_ETCD* variables.
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.etcd_name, env!("CARGO_BIN_EXE_nicslice")])
            .arg("--state")
            .arg(&self.state)
            .args(["--host-netns", &self.host.netns_name])
            .args(args)
            .env_remove("NICSLICE_FAIL_AT");
        for var in ["NICSLICE_ETCD", "NICSLICE_ETCD_CA", "NICSLICE_ETCD_CERT", "NICSLICE_ETCD_KEY"]
        {
            cmd.env_remove(var);
        }
        cmd.output().expect("run nicslice")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "nicslice {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `network create NAME` on the fleet pool with `etcd` and `tls` options
    /// (a subnet of its own, so that only TLS can refuse it): refused, with
    /// its one line of error.
    fn refused(&self, name: &str, etcd: &str, tls: &[&str]) -> String {
        self.subnets.set(self.subnets.get() + 1);
        let subnet = format!("10.79.{}.0/24", self.subnets.get());
        let mut args = vec!["network", "create", name, "--parent", "eth0"];
        args.extend_from_slice(&["--subnet", &subnet, "--ipam", "etcd", "--etcd", etcd]);
        args.extend_from_slice(tls);
        let out = self.run(&args);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "network create {name} {tls:?} must be refused");
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        println!("network create {name}: {}", err.trim_end());
        let listed = self.ok(&["network", "ls"]);
        assert!(!listed.contains(name), "a refused create leaves no network: {listed}");
        err
    }

    /// The 10.79 addresses on the endpoint namespace's links.
    fn kernel_addresses(&self) -> Vec<IpAddr> {
        let mut sock = RouteSocket::open_in(&self.kid.0).unwrap();
        let all = sock.addresses(None).unwrap().into_iter().map(|(_, a)| a.addr());
        all.filter(|a| a.to_string().starts_with("10.79.")).collect()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        nicslice_store::Store::remove_files(&self.state);
    }
}

#[test]
fn a_fleet_network_reaches_etcd_over_tls_with_a_client_certificate_and_says_why_it_cannot() {
    if in_vm() {
        return;
    }
    let lab = Lab::new("fleettls");
    let certs =
        Certificates::make(std::env::temp_dir().join(format!("{}-pki", lab._world.prefix())));
    let _etcd = Member::start(&lab.etcd_ns, &lab.etcd_name, &certs);
    let (ca, cert, key) =
        (certs.path("ca.pem"), certs.path("client.pem"), certs.path("client.key"));

    // The right CA and a client certificate: attaches get their addresses.
    let mut create = vec!["network", "create", "fleet", "--parent", "eth0"];
    create.extend_from_slice(&["--subnet", "10.79.0.0/24", "--ipam", "etcd", "--etcd", URL]);
    create.extend_from_slice(&["--etcd-ca", &ca, "--etcd-cert", &cert, "--etcd-key", &key]);
    lab.ok(&create);
    for ifname in ["e0", "e1"] {
        lab.ok(&["attach", "fleet", "--netns", &lab.kid.1, "--ifname", ifname]);
    }
    let on_links = lab.kernel_addresses();
    assert_eq!(on_links.len(), 2, "{on_links:?}");
    assert_ne!(on_links[0], on_links[1]);
    // etcd records both in use for this host, as `network inspect` reads it.
    let shown: serde_json::Value =
        serde_json::from_str(&lab.ok(&["network", "inspect", "fleet", "--json"])).unwrap();
    let me = shown["fleet"]["this_host"].as_str().unwrap();
    let hosts = shown["fleet"]["hosts"].as_array().unwrap();
    let mine = hosts.iter().find(|h| h["host"] == me).expect("this host's addresses in etcd");
    let mut in_use: Vec<IpAddr> = mine["in_use"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().parse().unwrap())
        .collect();
    in_use.sort();
    let mut expected = on_links.clone();
    expected.sort();
    assert_eq!(in_use, expected);
    lab.ok(&["detach", "fleet", "--netns", &lab.kid.1, "--ifname", "e1"]);

    // Without a client certificate etcd refuses the handshake.
    let err = lab.refused("nocert", URL, &["--etcd-ca", &ca]);
    assert!(err.contains("etcd wants a client certificate"), "{err}");
    assert!(err.contains("--etcd-cert and --etcd-key"), "{err}");

    // A client certificate etcd's CA did not sign: etcd refuses this host.
    let (stranger, stranger_key) = (certs.path("stranger.pem"), certs.path("stranger.key"));
    let err = lab.refused(
        "stranger",
        URL,
        &["--etcd-ca", &ca, "--etcd-cert", &stranger, "--etcd-key", &stranger_key],
    );
    assert!(err.contains("etcd refused this host's certificate"), "{err}");

    // A CA that did not sign etcd's certificate: this host refuses etcd.
    let other = certs.path("other-ca.pem");
    let err = lab.refused(
        "wrongca",
        URL,
        &["--etcd-ca", &other, "--etcd-cert", &cert, "--etcd-key", &key],
    );
    assert!(err.contains("certificate verification failed"), "{err}");
    assert!(err.contains(&other), "names the CA file: {err}");

    // Plain HTTP to etcd's TLS port.
    let err = lab.refused("plain", "http://127.0.0.1:2379", &[]);
    assert!(err.contains("if etcd serves TLS there, use https://"), "{err}");

    // Mistakes found before etcd is asked: a file that is not there, a
    // certificate without its key, TLS files with a plain URL, https
    // without the CA.
    let missing = certs.path("missing.pem");
    let err = lab.refused("nofile", URL, &["--etcd-ca", &missing]);
    assert!(err.contains(&format!("--etcd-ca {missing}: cannot read it")), "{err}");
    let err = lab.refused("nokey", URL, &["--etcd-ca", &ca, "--etcd-cert", &cert]);
    assert!(err.contains("--etcd-cert and --etcd-key go together"), "{err}");
    let err = lab.refused("mixed", "http://127.0.0.1:2379", &["--etcd-ca", &ca]);
    assert!(err.contains("plain HTTP, yet --etcd-ca"), "{err}");
    let err = lab.refused("noca", URL, &[]);
    assert!(err.contains("TLS needs --etcd-ca"), "{err}");

    // The files are read at each command: a host whose key is gone says so.
    std::fs::remove_file(&key).unwrap();
    let out = lab.run(&["attach", "fleet", "--netns", &lab.kid.1, "--ifname", "e2"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "an attach without its key must be refused");
    assert!(err.contains(&format!("--etcd-key {key}: cannot read it")), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert_eq!(lab.kernel_addresses().len(), 1, "the refused attach made nothing");
}
