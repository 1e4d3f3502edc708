//! What only nicslice's plugins offer, checked on the real kernel: all or
//! nothing under injected failures at every step, spec 1.1's STATUS and GC,
//! macvlan source mode and flags, and CHECK noticing a broken attachment.

use serde_json::{Value, json};

use crate::harness::{Net, lan_ipam, nicslice, run_plugin};

#[test]
fn a_failed_add_leaves_nothing_at_any_step() {
    let imp = nicslice();
    let mut net = Net::new("cnifault");
    // One address in the range: a leaked lease would make the last ADD fail.
    let conf = net.conf(&imp, "1.1.0", lan_ipam("192.168.0.80", "192.168.0.80"), Value::Null);
    for step in ["allocate", "create-link", "add-address", "link-up", "add-route", "announce"] {
        let c = net.container();
        let code = net
            .call_env(&imp, "ADD", Some(&c), &conf, &[("NICSLICE_FAIL_AT", step)])
            .expect_err(step);
        assert!(code >= 100 || code == 7, "{step}: code {code}");
        assert!(c.non_lo().is_empty(), "{step}: left {:?}", c.non_lo());
        assert_eq!(c.default_gateway(false), None, "{step}: left a route");
        // The runtime calls DEL after a failed ADD; it must succeed too.
        net.call(&imp, "DEL", Some(&c), &conf).expect_ok("DEL after a failed ADD");
    }
    let c = net.container();
    net.call(&imp, "ADD", Some(&c), &conf).expect_ok("ADD after every failure");
    assert_eq!(c.addresses("eth0"), ["192.168.0.80/24"]);
}

#[test]
fn a_failed_del_step_is_reported() {
    let imp = nicslice();
    let mut net = Net::new("cnidelf");
    let c = net.container();
    let conf = net.conf(&imp, "1.1.0", lan_ipam("192.168.0.81", "192.168.0.82"), Value::Null);
    net.call(&imp, "ADD", Some(&c), &conf).expect_ok("ADD");
    net.call_env(&imp, "DEL", Some(&c), &conf, &[("NICSLICE_FAIL_AT", "delete-link")])
        .expect_err("DEL");
    net.call(&imp, "DEL", Some(&c), &conf).expect_ok("DEL again");
    assert!(c.link("eth0").is_none());
}

#[test]
fn status_and_gc() {
    let imp = nicslice();
    let mut net = Net::new("cnigc");
    let (a, b) = (net.container(), net.container());
    let conf = net.conf(&imp, "1.1.0", lan_ipam("192.168.0.90", "192.168.0.91"), Value::Null);
    net.call(&imp, "STATUS", None, &conf).expect_ok("STATUS");
    net.call(&imp, "ADD", Some(&a), &conf).expect_ok("ADD a");
    net.call(&imp, "ADD", Some(&b), &conf).expect_ok("ADD b");
    // Both addresses are leased; GC keeping only a frees b's.
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": a.id, "ifname": "eth0"}]);
    net.call(&imp, "GC", None, &gc).expect_ok("GC");
    let c = net.container();
    net.call(&imp, "ADD", Some(&c), &conf).expect_ok("ADD after GC");
    assert_eq!(c.addresses("eth0"), ["192.168.0.91/24"]);
    // The draft key works too, and an empty list frees everything.
    let mut gc = conf.clone();
    gc["cni.dev/attachments"] = json!([]);
    net.call(&imp, "GC", None, &gc).expect_ok("GC with cni.dev/attachments");
    // STATUS fails with code 50 once the master is gone.
    let mut host = nicslice_kernel::RouteSocket::open_in(&net.host.netns).unwrap();
    host.delete_link_by_name("eth0").unwrap();
    assert_eq!(net.call(&imp, "STATUS", None, &conf).expect_err("STATUS"), 50);
}

#[test]
fn source_mode_flags_queue_and_announce_settings_reach_the_kernel() {
    let imp = nicslice();
    let mut net = Net::new("cnisrc");
    let c = net.container();
    let extra = json!({"mode": "source", "flags": ["nodst"], "sourceMacs": ["02:00:00:00:00:77"],
                       "bcqueuelen": 300, "mtu": 1400});
    let conf = net.conf(&imp, "1.1.0", lan_ipam("192.168.0.95", "192.168.0.96"), extra);
    net.call(&imp, "ADD", Some(&c), &conf).expect_ok("ADD source mode");
    let link = c.link("eth0").unwrap();
    let mv = link.macvlan.unwrap();
    assert_eq!(mv.mode.map(|m| m.to_string()).as_deref(), Some("source"));
    assert!(mv.flags.nodst);
    assert_eq!(
        mv.source_macs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["02:00:00:00:00:77"]
    );
    assert_eq!(mv.bcqueuelen, Some(300));
    assert_eq!(link.mtu, 1400);
    // Neighbours learn the new MAC from the kernel's gratuitous ARP at link up.
    let arp_notify = c
        .netns
        .run(|| std::fs::read_to_string("/proc/sys/net/ipv4/conf/eth0/arp_notify"))
        .unwrap()
        .unwrap();
    assert_eq!(arp_notify.trim(), "1", "arp_notify is on in the container");
}

#[test]
fn no_default_route_and_check_finds_breakage() {
    let imp = nicslice();
    let mut net = Net::new("cnichk");
    let c = net.container();
    let conf = net.conf(
        &imp,
        "1.1.0",
        lan_ipam("192.168.0.97", "192.168.0.98"),
        json!({"noDefaultRoute": true}),
    );
    let r = net.call(&imp, "ADD", Some(&c), &conf).expect_ok("ADD");
    assert_eq!(c.default_gateway(false), None);
    let mut check = conf.clone();
    check["prevResult"] = r;
    net.call(&imp, "CHECK", Some(&c), &check).expect_ok("CHECK");
    let mut sock = nicslice_kernel::RouteSocket::open_in(&c.netns).unwrap();
    let eth0 = sock.require_link("eth0", "c").unwrap();
    sock.delete_address(eth0.index, "192.168.0.97/24".parse().unwrap()).unwrap();
    net.call(&imp, "CHECK", Some(&c), &check).expect_err("CHECK without the address");
    // A wrong mode is noticed too.
    let mut wrong = check.clone();
    wrong["mode"] = json!("vepa");
    net.call(&imp, "CHECK", Some(&c), &wrong).expect_err("CHECK with another mode");
}

#[test]
fn concurrent_ipam_calls_get_distinct_addresses_without_errors() {
    // A node starting many pods at once: one nicslice-ipam process per call,
    // all on one lease database, none refused for a busy lock.
    const CALLS: usize = 16;
    let imp = nicslice();
    let mut net = Net::new("cniconc");
    let c = net.container();
    let conf = net.conf(&imp, "1.1.0", lan_ipam("192.168.0.100", "192.168.0.199"), Value::Null);
    let plugin = imp.dir.join(imp.ipam);
    let calls: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CALLS)
            .map(|i| {
                let (net, c, conf, plugin, dir) = (&net, &c, &conf, &plugin, &imp.dir);
                s.spawn(move || {
                    let vars = [
                        ("CNI_COMMAND", "ADD".to_string()),
                        ("CNI_CONTAINERID", format!("{}-{i}", c.id)),
                        ("CNI_NETNS", c.path.clone()),
                        ("CNI_IFNAME", "eth0".to_string()),
                        ("CNI_PATH", dir.display().to_string()),
                    ];
                    run_plugin(&net.host.netns, plugin, &vars, conf.to_string().as_bytes())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut ips: Vec<String> = calls
        .into_iter()
        .map(|call| call.expect_ok("concurrent ADD")["ips"][0]["address"].as_str().unwrap().into())
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), CALLS, "an address was handed out twice: {ips:?}");
}

#[test]
fn nicslice_macvlan_delegates_to_other_ipam_plugins() {
    // IPAM found in CNI_PATH and run as the spec says: Debian's host-local and
    // static beside nicslice's plugins.
    let Some(reference) = crate::harness::reference() else { return };
    let imp = nicslice();
    let mut net = Net::new("cnideleg");
    let cni_path = format!("{}:{}", imp.dir.display(), reference.dir.display());
    let cases = [
        (
            json!({"type": "static", "addresses": [{"address": "192.168.0.77/24", "gateway": "192.168.0.1"}]}),
            "192.168.0.77/24",
        ),
        (
            json!({"type": "host-local", "subnet": "192.168.0.0/24", "rangeStart": "192.168.0.70",
                "rangeEnd": "192.168.0.71", "gateway": "192.168.0.1",
                "dataDir": net.data_dir.join("host-local")}),
            "192.168.0.70/24",
        ),
    ];
    for (ipam, address) in cases {
        let c = net.container();
        let mut conf = net.conf(&imp, "1.0.0", Value::Null, Value::Null);
        conf["ipam"] = ipam;
        let env = [("CNI_PATH", cni_path.as_str())];
        let result = net.call_env(&imp, "ADD", Some(&c), &conf, &env).expect_ok("ADD");
        assert_eq!(result["ips"][0]["address"], address, "{result}");
        assert_eq!(c.addresses("eth0"), [address]);
        assert_eq!(c.default_gateway(false), Some("192.168.0.1".parse().unwrap()));
        assert!(c.ping("192.168.0.1"), "the switch answers");
        net.call_env(&imp, "DEL", Some(&c), &conf, &env).expect_ok("DEL");
        assert!(c.link("eth0").is_none());
    }
}
