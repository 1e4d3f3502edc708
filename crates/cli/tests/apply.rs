//! `nicslice apply FILE`: a file of networks, a shim and endpoints becomes
//! links a user can see and ping through; the same file again changes
//! nothing and sends no netlink write (counted with strace); `--dry-run`
//! changes nothing; `--prune` removes what the file dropped and nothing
//! nicslice did not make; a failure part-way leaves nothing new; a network
//! recorded with other settings is changed in place or refused; a bad file
//! is one error line. A fleet network (`ipam = "etcd"`) is declared against
//! a real etcd the test starts, and applied again without a write.

mod common;
mod etcd;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::*;
use nicslice_kernel::{MacvlanLinkRequest, Netns, NetnsTarget, RouteSocket, SimpleKind, netns};
use nicslice_model::{Driver, MacvlanMode};

/// The namespaces `apply` makes (`create = true`), removed when the test
/// ends whatever happened (the World removes only those it made itself).
struct Made(Vec<String>);

impl Drop for Made {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = netns::delete_named(name);
        }
    }
}

/// Writes `text` as this lab's apply file `tag`.
fn file(lab: &Lab, tag: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("{}-{tag}.toml", lab.world.prefix()));
    std::fs::write(&path, text).unwrap();
    path
}

fn opened(name: &str) -> Option<Netns> {
    NetnsTarget::Named(name.to_string()).open().ok()
}

/// The lab's LAN, a shim, endpoint `a` at 192.168.0.10 and endpoint `b`
/// (an address of the range), both in namespaces apply makes; `b` only
/// when `with_b`.
fn desired(a: &str, b: &str, with_b: bool, promisc: bool) -> String {
    let mut text = format!(
        r#"
[[network]]
name = "lan"
parent = "eth0"
mode = "bridge"
promisc = {promisc}
[[network.subnet]]
subnet = "192.168.0.0/24"
gateway = "192.168.0.1"
ip_range = "192.168.0.64/26"

[[shim]]
network = "lan"

[[endpoint]]
network = "lan"
netns = "{a}"
create = true
ips = ["192.168.0.10"]
"#
    );
    if with_b {
        text.push_str(&format!(
            "\n[[endpoint]]\nnetwork = \"lan\"\nnetns = \"{b}\"\ncreate = true\nifname = \"eth1\"\n"
        ));
    }
    text
}

/// Runs `nicslice ARGS` against the lab under `strace` and counts the
/// netlink requests that change something (rtnetlink NEW, DEL and SET
/// messages; GETs are reads) it sent, from every thread.
fn traced(lab: &Lab, args: &[&str]) -> (Output, usize) {
    traced_in(lab, None, args)
}

/// [`traced`], run in namespace `netns` when given (`ip netns exec`, which
/// itself is not traced).
fn traced_in(lab: &Lab, netns: Option<&str>, args: &[&str]) -> (Output, usize) {
    let trace = std::env::temp_dir().join(format!("{}-strace.txt", lab.world.prefix()));
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "strace"]);
            c
        }
        None => Command::new("strace"),
    };
    let out = cmd
        .args(["-f", "-qq", "-e", "trace=sendto,sendmsg", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_nicslice"))
        .arg("--state")
        .arg(&lab.state)
        .arg("--host-netns")
        .arg(&lab.host.netns_name)
        .args(args)
        .env_remove("NICSLICE_FAIL_AT")
        .output()
        .expect("run strace (installed on the test machine)");
    let text = std::fs::read_to_string(&trace).unwrap();
    let _ = std::fs::remove_file(&trace);
    (out, netlink_writes(&text))
}

/// rtnetlink message types come in fours from 16: NEW, DEL, GET, SET.
/// strace prints them by name when it knows the socket's protocol and as
/// numbers when it does not (a socket made in another namespace).
fn netlink_writes(trace: &str) -> usize {
    trace
        .match_indices("nlmsg_type=")
        .filter(|(at, m)| {
            let rest = &trace[at + m.len()..];
            if let Some(name) = rest.strip_prefix("RTM_") {
                return !name.starts_with("GET");
            }
            let hex = rest.strip_prefix("0x").unwrap_or("");
            let digits: String = hex.chars().take_while(char::is_ascii_hexdigit).collect();
            let t = u16::from_str_radix(&digits, 16).ok().or_else(|| {
                rest.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
            });
            t.is_some_and(|t| t >= 16 && (t - 16) % 4 != 2)
        })
        .count()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "apply failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        stdout(out)
    );
}

#[test]
fn strace_counting_tells_writes_from_reads() {
    let t = "sendto(3, [{nlmsg_len=32, nlmsg_type=0x10 /* x */}]) \
             sendto(3, [{nlmsg_type=0x12 /* x */}]) sendto(3, [{nlmsg_type=RTM_GETADDR}]) \
             sendto(3, [{nlmsg_type=RTM_NEWROUTE}]) sendto(3, [{nlmsg_type=0x15}]) \
             sendto(3, [{nlmsg_type=0x1e}])";
    assert_eq!(
        netlink_writes(t),
        3,
        "NEWLINK, NEWROUTE and DELADDR; not GETLINK, GETADDR, GETNEIGH"
    );
}

#[test]
fn apply_makes_what_the_file_says_and_again_sends_no_write() {
    let lab = Lab::new("apply");
    let (a, b) = (lab.world.name_of("a"), lab.world.name_of("b"));
    let _made = Made(vec![a.clone(), b.clone()]);
    let path = file(&lab, "lan", &desired(&a, &b, true, false));
    let path = path.to_str().unwrap();

    let (out, writes) = traced(&lab, &["apply", path]);
    assert_ok(&out);
    let plan = stdout(&out);
    for line in ["create network lan", "create shim of lan", &format!("create namespace {a}")] {
        assert!(plan.contains(line), "{line:?} missing from the plan:\n{plan}");
    }
    assert!(plan.contains("applied 6 change(s)"), "{plan}");
    eprintln!("first apply: {writes} netlink writes");
    assert!(writes > 10, "the first apply makes links, addresses and routes ({writes} writes)");

    // What a user checks: the interfaces, their mode and addresses, and pings.
    let ns_a = opened(&a).expect("apply made namespace a");
    let ns_b = opened(&b).expect("apply made namespace b");
    let eth0 = link(&ns_a, "eth0").expect("eth0 in a");
    assert_eq!(eth0.kind.as_deref(), Some("macvlan"));
    assert_eq!(eth0.macvlan.unwrap().mode, Some(MacvlanMode::Bridge));
    assert_eq!(addresses(&ns_a, "eth0"), vec!["192.168.0.10/24"]);
    let b_addr = addresses(&ns_b, "eth1");
    assert_eq!(b_addr.len(), 1, "{b_addr:?}");
    assert!(b_addr[0].starts_with("192.168.0.") && b_addr[0].ends_with("/24"), "{b_addr:?}");
    let b_ip = b_addr[0].trim_end_matches("/24").to_string();
    let last: u8 = b_ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!((64..128).contains(&last), "b's address comes from ip_range: {b_ip}");
    assert_eq!(default_gateway(&ns_a), Some("192.168.0.1".parse().unwrap()));
    assert!(ping(&ns_a, "192.168.0.1"), "a reaches the gateway");
    assert!(ping(&ns_a, &b_ip), "a reaches b");
    let host = lab.host.netns.clone_handle().unwrap();
    assert!(ping(&host, "192.168.0.10"), "the host reaches a through the shim");

    let (again, writes) = traced(&lab, &["apply", path]);
    assert_ok(&again);
    let text = stdout(&again);
    assert_eq!(writes, 0, "a second apply of the same file sends no netlink write:\n{text}");
    assert!(text.contains("nothing to do"), "{text}");
    let steps: Vec<&str> = text.lines().filter(|l| !l.starts_with("nothing to do")).collect();
    assert!(!steps.is_empty() && steps.iter().all(|l| l.starts_with("keep ")), "{text}");
    assert!(ping(&ns_a, "192.168.0.1"), "still working");

    let json = lab.json(&["apply", path]);
    assert_eq!(json["changes"], 0, "{json}");
    assert_eq!(json["applied"], false, "{json}");
}

#[test]
fn dry_run_changes_nothing() {
    let lab = Lab::new("apply_dry");
    let (a, b) = (lab.world.name_of("a"), lab.world.name_of("b"));
    let _made = Made(vec![a.clone(), b.clone()]);
    let path = file(&lab, "lan", &desired(&a, &b, true, true));
    let path = path.to_str().unwrap();
    let host = lab.host.netns.clone_handle().unwrap();
    let before = non_lo(&host);

    let (out, writes) = traced(&lab, &["apply", path, "--dry-run"]);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(
        text.contains("create network lan") && text.contains("dry run: 6 change(s) planned"),
        "{text}"
    );
    assert_eq!(writes, 0, "a dry run sends no netlink write");
    let json = lab.json(&["apply", path, "--dry-run"]);
    assert_eq!(json["applied"], false);
    assert_eq!(json["steps"][0]["action"], "create", "{json}");

    assert!(opened(&a).is_none() && opened(&b).is_none(), "no namespace made");
    assert_eq!(non_lo(&host), before, "no link in the host namespace");
    assert!(!link(&host, "eth0").unwrap().promisc_flag, "promiscuous mode untouched");
    assert!(lab.json(&["network", "ls"]).as_array().unwrap().is_empty(), "nothing recorded");
}

#[test]
fn prune_removes_what_the_file_dropped_and_nothing_nicslice_did_not_make() {
    let lab = Lab::new("apply_prune");
    let (a, b) = (lab.world.name_of("a"), lab.world.name_of("b"));
    let _made = Made(vec![a.clone(), b.clone()]);
    let both = file(&lab, "both", &desired(&a, &b, true, false));
    lab.ok(&["apply", both.to_str().unwrap()]);
    // Links nicslice did not make: a bridge beside b's endpoint, a macvlan
    // of the user's own on the parent.
    let ns_b = opened(&b).unwrap();
    RouteSocket::open_in(&ns_b).unwrap().create_simple(SimpleKind::Bridge, "mine0", None).unwrap();
    let host = lab.host.netns.clone_handle().unwrap();
    {
        let mut sock = RouteSocket::open_in(&host).unwrap();
        let eth0 = sock.require_link("eth0", "host").unwrap();
        let name = "usr0".parse().unwrap();
        let req = MacvlanLinkRequest::new(Driver::Macvlan, name, eth0.index, MacvlanMode::Bridge);
        sock.create_macvlan(&req, None).unwrap();
    }

    let only_a = file(&lab, "only-a", &desired(&a, &b, false, false));
    let only_a = only_a.to_str().unwrap();
    let kept = lab.ok(&["apply", only_a]);
    assert!(
        kept.contains(&format!(
            "keep endpoint eth1 in /run/netns/{b} on lan: not in the file; --prune removes it"
        )),
        "{kept}"
    );
    assert!(link(&ns_b, "eth1").is_some(), "without --prune the endpoint stays");

    let pruned = lab.ok(&["apply", only_a, "--prune"]);
    assert!(
        pruned.contains(&format!("remove endpoint eth1 in /run/netns/{b} on lan: not in the file")),
        "{pruned}"
    );
    assert!(pruned.contains("applied 1 change(s)"), "{pruned}");
    assert!(link(&ns_b, "eth1").is_none(), "the dropped endpoint is gone");
    assert!(link(&ns_b, "mine0").is_some(), "the user's link beside it stays");
    assert!(link(&host, "usr0").is_some(), "the user's link in the host stays");
    assert!(link(&host, "eth0").is_some(), "the parent stays");
    let ns_a = opened(&a).unwrap();
    assert!(ping(&ns_a, "192.168.0.1"), "the endpoint still listed works");
    let eps = lab.json(&["endpoint", "ls"]);
    assert_eq!(eps.as_array().unwrap().len(), 1, "{eps}");

    // An empty file with --prune: every network nicslice made goes, with
    // its shim and endpoints; the parent and the user's links stay.
    let empty = file(&lab, "empty", "");
    let gone = lab.ok(&["apply", empty.to_str().unwrap(), "--prune"]);
    assert!(gone.contains("remove network lan: not in the file"), "{gone}");
    assert!(lab.json(&["network", "ls"]).as_array().unwrap().is_empty());
    assert!(link(&ns_a, "eth0").is_none());
    assert_eq!(non_lo(&host).len(), 2, "eth0 and usr0 only: {:?}", non_lo(&host));
}

#[test]
fn a_failure_part_way_leaves_nothing_new() {
    let lab = Lab::new("apply_fail");
    let (a, b) = (lab.world.name_of("a"), lab.world.name_of("b"));
    let _made = Made(vec![a.clone(), b.clone()]);
    let path = file(&lab, "lan", &desired(&a, &b, true, true));
    let path = path.to_str().unwrap();
    let host = lab.host.netns.clone_handle().unwrap();
    let before = non_lo(&host);
    // "converge": every change made but the last; "announce": the first
    // endpoint fails inside its own attach, after the network and shim.
    for step in ["converge", "announce"] {
        let out = lab.run_env(&["apply", path], &[("NICSLICE_FAIL_AT", step)]);
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!out.status.success(), "{step}: apply succeeded");
        assert!(err.contains("apply stopped at") && err.contains("were undone"), "{step}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{step}: one line: {err}");
        assert!(!err.contains("undoing the steps already done also failed"), "{step}: {err}");
        assert!(
            opened(&a).is_none() && opened(&b).is_none(),
            "{step}: namespaces made were removed"
        );
        assert_eq!(non_lo(&host), before, "{step}: no shim or other link left in the host");
        assert!(!link(&host, "eth0").unwrap().promisc_flag, "{step}: promiscuous mode given back");
        assert!(
            lab.json(&["network", "ls"]).as_array().unwrap().is_empty(),
            "{step}: nothing recorded"
        );
    }
    // And without a failure the same file applies.
    lab.ok(&["apply", path]);
    assert!(link(&opened(&a).unwrap(), "eth0").is_some());
}

#[test]
fn other_settings_are_changed_in_place_or_refused_naming_the_setting() {
    let lab = Lab::new("apply_change");
    let (a, b) = (lab.world.name_of("a"), lab.world.name_of("b"));
    let _made = Made(vec![a.clone(), b.clone()]);
    let plain = file(&lab, "plain", &desired(&a, &b, false, false));
    lab.ok(&["apply", plain.to_str().unwrap()]);
    let host = lab.host.netns.clone_handle().unwrap();
    let ns_a = opened(&a).unwrap();
    let index = link(&ns_a, "eth0").unwrap().index;

    let promisc = file(&lab, "promisc", &desired(&a, &b, false, true));
    let out = lab.ok(&["apply", promisc.to_str().unwrap()]);
    assert!(
        out.contains("modify network lan: promisc (record: false, file: true), changed in place"),
        "{out}"
    );
    assert!(link(&host, "eth0").unwrap().promisc_flag, "the parent is promiscuous now");
    assert_eq!(link(&ns_a, "eth0").unwrap().index, index, "the endpoint was not touched");

    let private = desired(&a, &b, false, true).replace("mode = \"bridge\"", "mode = \"private\"");
    let private = file(&lab, "private", &private);
    let err =
        lab.fails(&["apply", private.to_str().unwrap()], "mode (record: bridge, file: private)");
    assert!(err.contains("--prune"), "{err}");
    assert_eq!(link(&ns_a, "eth0").unwrap().index, index, "refused: the endpoint is untouched");

    // With --prune the network is made again, and so is its shim, which the
    // model refuses in private mode: the whole apply is undone, and the
    // endpoint is back as it was, address and all.
    let out = lab.run(&["apply", private.to_str().unwrap(), "--prune"]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "a shim cannot reach private-mode children");
    assert!(err.contains("would not reach its children") && err.contains("were undone"), "{err}");
    let eth0 = link(&ns_a, "eth0").expect("the endpoint is made again by the undo");
    assert_eq!(eth0.macvlan.unwrap().mode, Some(MacvlanMode::Bridge));
    assert_eq!(addresses(&ns_a, "eth0"), vec!["192.168.0.10/24"]);
    assert!(ping(&ns_a, "192.168.0.1"));
    assert!(ping(&host, "192.168.0.10"), "and the shim with it");

    // Without the shim, --prune makes the network and its endpoint again in private mode.
    let text = desired(&a, &b, false, true).replace("mode = \"bridge\"", "mode = \"private\"");
    let private = file(&lab, "private-noshim", &text.replace("[[shim]]\nnetwork = \"lan\"\n", ""));
    lab.ok(&["apply", private.to_str().unwrap(), "--prune"]);
    let eth0 = link(&ns_a, "eth0").unwrap();
    assert_eq!(eth0.macvlan.unwrap().mode, Some(MacvlanMode::Private));
    assert_eq!(addresses(&ns_a, "eth0"), vec!["192.168.0.10/24"]);
    assert!(ping(&ns_a, "192.168.0.1"));
    let again = lab.ok(&["apply", private.to_str().unwrap(), "--prune"]);
    assert!(again.contains("nothing to do"), "{again}");
}

#[test]
fn a_bad_file_is_one_error_line() {
    let lab = Lab::new("apply_bad");
    let cases = [
        ("unknown", "[[network]]\nname = \"lan\"\ncolor = \"red\"\n", "unknown field `color`"),
        ("mode", "[[network]]\nname = \"lan\"\nmode = \"fast\"\n", "network[0].mode: unknown mode"),
        ("toml", "[[network]\nname = ", "is not a valid apply file (TOML) at line 1"),
        (
            "undeclared",
            "[[endpoint]]\nnetwork = \"wan\"\nnetns = \"x\"\n",
            "endpoint[0].network: network wan is not declared",
        ),
        (
            "subnet",
            "[[network]]\nname = \"lan\"\nparent = \"eth0\"\n[[network.subnet]]\nsubnet = \"10.0.0.0/33\"\n",
            "line 5",
        ),
        (
            "nonamespace",
            "[[network]]\nname = \"lan\"\nparent = \"eth0\"\n[[endpoint]]\nnetwork = \"lan\"\nnetns = \"nsl-no-such-ns\"\n",
            "namespace nsl-no-such-ns does not exist; add `create = true`",
        ),
    ];
    for (tag, text, needle) in cases {
        let path = file(&lab, tag, text);
        let err = lab.fails(&["apply", path.to_str().unwrap()], needle);
        assert!(err.contains(path.to_str().unwrap()), "{tag}: names the file: {err}");
        let _ = std::fs::remove_file(path);
    }
    lab.fails(&["apply", "/nonexistent/apply.toml"], "reading /nonexistent/apply.toml");
    assert!(lab.json(&["network", "ls"]).as_array().unwrap().is_empty(), "nothing was made");
}

#[test]
fn apply_repairs_drift_through_the_comparison_doctor_makes() {
    let lab = Lab::new("apply_drift");
    let (a, b) = (lab.world.name_of("a"), lab.world.name_of("b"));
    let _made = Made(vec![a.clone(), b.clone()]);
    let path = file(&lab, "lan", &desired(&a, &b, true, false));
    let path = path.to_str().unwrap();
    lab.ok(&["apply", path]);
    let host = lab.host.netns.clone_handle().unwrap();
    let b_before = addresses(&opened(&b).unwrap(), "eth1");
    let shim = lab.json(&["shim", "ls"])[0]["name"].as_str().unwrap().to_string();

    // By hand: the shim deleted, b's link deleted, a's namespace deleted.
    RouteSocket::open_in(&host).unwrap().delete_link_by_name(&shim).unwrap();
    RouteSocket::open_in(&opened(&b).unwrap()).unwrap().delete_link_by_name("eth1").unwrap();
    netns::delete_named(&a).unwrap();
    let out = lab.run(&["doctor"]);
    assert!(!out.status.success(), "doctor sees the drift");

    let text = lab.ok(&["apply", path]);
    for line in [
        format!("modify shim of lan: shim {shim}: shim {shim} is missing"),
        format!("create namespace {a}: missing"),
        format!("modify endpoint eth0 in {a} on lan: its namespace /run/netns/{a} is gone"),
        format!("modify endpoint eth1 in {b} on lan: "),
    ] {
        assert!(text.contains(&line), "{line:?} missing from:\n{text}");
    }
    assert!(!text.contains("keep shim"), "the shim is repaired, not kept:\n{text}");
    assert!(lab.ok(&["doctor"]).contains("everything is as nicslice made it"));
    let ns_a = opened(&a).unwrap();
    assert_eq!(addresses(&ns_a, "eth0"), vec!["192.168.0.10/24"]);
    assert_eq!(addresses(&opened(&b).unwrap(), "eth1"), b_before, "b keeps its address");
    assert!(ping(&ns_a, "192.168.0.1"));
    assert!(ping(&host, "192.168.0.10"), "through the shim made again");
    assert!(lab.ok(&["apply", path]).contains("nothing to do"));
}

#[test]
fn a_fleet_network_is_declared_and_applied_again_without_a_write() {
    if etcd::in_vm() {
        return;
    }
    let mut lab = Lab::new("apply_fleet");
    let (etcd_ns, etcd_name) = lab.netns("etcd");
    let cluster = etcd::Cluster::start(&etcd_ns, &etcd_name, 1);
    // Made here: a namespace apply made inside `ip netns exec` would be
    // mounted in that command's own mount namespace, gone when it ends.
    let (ns, web) = lab.netns("web");
    let text = format!(
        r#"
[[network]]
name = "fleet"
parent = "eth0"
ipam = ["etcd"]
etcd = ["{}"]
etcd_block = 8
etcd_ttl = 30
etcd_cooldown = 60
[[network.subnet]]
subnet = "192.168.0.0/24"
gateway = "192.168.0.1"

[[endpoint]]
network = "fleet"
netns = "{web}"
"#,
        cluster.clients[0]
    );
    let path = file(&lab, "fleet", &text);
    let path = path.to_str().unwrap();
    // nicslice runs where etcd listens (127.0.0.1 of its namespace).
    let (out, writes) = traced_in(&lab, Some(&etcd_name), &["apply", path]);
    assert_ok(&out);
    assert!(stdout(&out).contains("applied 2 change(s)"), "{}", stdout(&out));
    assert!(writes > 0, "the first apply makes the endpoint's link");

    // `network inspect` asks etcd: run where etcd listens.
    let inspect = Command::new("ip")
        .args(["netns", "exec", &etcd_name, env!("CARGO_BIN_EXE_nicslice")])
        .arg("--state")
        .arg(&lab.state)
        .args(["--host-netns", &lab.host.netns_name, "network", "inspect", "fleet", "--json"])
        .output()
        .unwrap();
    let net: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(net["ipam"], "etcd", "{net}");
    let fleet = &net["fleet"];
    assert_eq!(fleet["etcd"][0], cluster.clients[0].as_str(), "{net}");
    assert_eq!([&fleet["block_size"], &fleet["ttl_s"], &fleet["cooldown_s"]], [8, 30, 60], "{net}");
    // The endpoint's address came from a block this host leased in etcd.
    let addr = addresses(&ns, "eth0");
    assert_eq!(addr.len(), 1, "{addr:?}");
    let ip = addr[0].trim_end_matches("/24");
    let etcd = cluster.client();
    let kvs = etcd_ns.run(|| etcd.get_prefix(b"/nicslice/fleet/fleet/")).unwrap().unwrap();
    let utf8 = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        kvs.iter().any(|kv| utf8(&kv.value) == ip || utf8(&kv.key).ends_with(ip)),
        "{ip} is in etcd: {:?}",
        kvs.iter().map(|kv| (utf8(&kv.key), utf8(&kv.value))).collect::<Vec<_>>()
    );
    assert!(ping(&ns, "192.168.0.1"), "the endpoint reaches the gateway");

    let asked = cluster.requests(&etcd_ns);
    let (again, writes) = traced_in(&lab, Some(&etcd_name), &["apply", path]);
    assert_ok(&again);
    assert!(stdout(&again).contains("nothing to do"), "{}", stdout(&again));
    assert_eq!(writes, 0, "a second apply sends no netlink write");
    assert_eq!(cluster.requests(&etcd_ns), asked, "nor any request to etcd");

    // Another lease: the pool's settings are the network's, refused in place.
    let other = file(&lab, "fleetttl", &text.replace("etcd_ttl = 30", "etcd_ttl = 40"));
    lab.fails(&["apply", other.to_str().unwrap()], "network fleet: etcd (record: http://");
    let _ = std::fs::remove_file(other);

    // A bad fleet option: one line naming the file and the key.
    let bad = file(&lab, "fleetbad", &text.replace("etcd_block = 8", "etcd_block = 65"));
    let err =
        lab.fails(&["apply", bad.to_str().unwrap()], "network[0].etcd_block: 65: expected 1 to 64");
    assert!(err.contains(bad.to_str().unwrap()), "names the file: {err}");
    let _ = std::fs::remove_file(bad);
}

/// `route_range = true` in a `[[shim]]`: the range goes through the shim as
/// one route (an endpoint outside it, a's 192.168.0.10, keeps a route of its
/// own), a second apply changes nothing, and dropping the key makes the
/// shim again with a route per endpoint.
#[test]
fn a_shims_route_range_is_applied_kept_and_dropped() {
    let lab = Lab::new("apply_range");
    let (a, b) = (lab.world.name_of("a"), lab.world.name_of("b"));
    let _made = Made(vec![a.clone(), b.clone()]);
    let plain = desired(&a, &b, true, false);
    let shim = "[[shim]]\nnetwork = \"lan\"\n";
    let ranged = plain.replace(shim, &format!("{shim}route_range = true\n"));
    let ranged = file(&lab, "ranged", &ranged);
    lab.ok(&["apply", ranged.to_str().unwrap()]);
    let listed = lab.json(&["shim", "ls"]);
    assert_eq!(listed[0]["ranges"], serde_json::json!(["192.168.0.64/26"]), "{listed}");
    assert_eq!(listed[0]["routes"], serde_json::json!(["192.168.0.10"]), "{listed}");
    let host = lab.host.netns.clone_handle().unwrap();
    let b_ip = addresses(&opened(&b).unwrap(), "eth1")[0].split('/').next().unwrap().to_string();
    assert!(ping(&host, "192.168.0.10") && ping(&host, &b_ip), "host -> a and b ({b_ip})");
    assert!(lab.ok(&["apply", ranged.to_str().unwrap()]).contains("nothing to do"));

    let plain = file(&lab, "plain", &plain);
    let text = lab.ok(&["apply", plain.to_str().unwrap()]);
    assert!(text.contains("modify shim of lan"), "{text}");
    let listed = lab.json(&["shim", "ls"]);
    assert_eq!(listed[0]["ranges"], serde_json::json!([]), "{listed}");
    assert_eq!(listed[0]["routes"].as_array().unwrap().len(), 2, "{listed}");
    assert!(ping(&host, &b_ip), "host -> b through its own route");
}
