//! What a runtime asks for in a call: the MAC (CNI_ARGS, runtimeConfig),
//! particular IPs (CNI_ARGS IP=, args.cni.ips, runtimeConfig.ips), two
//! address families, and what happens when the range runs out.

use serde_json::{Value, json};

use crate::harness::{Net, for_each_impl, lan_ipam};

#[test]
fn mac_from_cni_args_and_from_runtime_config() {
    for_each_impl(|imp| {
        let mut net = Net::new("cnimac");
        let (a, b) = (net.container(), net.container());
        let conf = net.conf(imp, "1.0.0", lan_ipam("192.168.0.10", "192.168.0.19"), Value::Null);
        let mac = "02:00:00:aa:bb:01";
        let r = net
            .call_env(
                imp,
                "ADD",
                Some(&a),
                &conf,
                &[("CNI_ARGS", &format!("IgnoreUnknown=1;MAC={mac}"))],
            )
            .expect_ok("ADD with CNI_ARGS MAC");
        assert_eq!(a.link("eth0").unwrap().mac.unwrap().to_string(), mac, "{}", imp.label);
        assert_eq!(r["interfaces"][0]["mac"], mac);
        let rt_mac = "02:00:00:aa:bb:02";
        let conf = net.conf(
            imp,
            "1.0.0",
            lan_ipam("192.168.0.10", "192.168.0.19"),
            json!({"runtimeConfig": {"mac": rt_mac}}),
        );
        net.call(imp, "ADD", Some(&b), &conf).expect_ok("ADD with runtimeConfig.mac");
        assert_eq!(b.link("eth0").unwrap().mac.unwrap().to_string(), rt_mac, "{}", imp.label);
    });
}

#[test]
fn requested_ips_from_every_source() {
    for_each_impl(|imp| {
        let mut net = Net::new("cnireq");
        let (a, b, c) = (net.container(), net.container(), net.container());
        let ipam = lan_ipam("192.168.0.20", "192.168.0.29");
        if !imp.known.requested_ips_and_range_sets {
            // The fleet pool chooses the address: a requested one is
            // refused as the configuration's fault, and nothing is left.
            let conf = net.conf(imp, "1.0.0", ipam, Value::Null);
            let env = [("CNI_ARGS", "IgnoreUnknown=1;IP=192.168.0.25")];
            let code = net.call_env(imp, "ADD", Some(&a), &conf, &env).expect_err("IP=");
            assert_eq!(code, 7, "{}", imp.label);
            assert!(a.non_lo().is_empty(), "{}: {:?}", imp.label, a.non_lo());
            return;
        }
        let conf = net.conf(imp, "1.0.0", ipam.clone(), Value::Null);
        net.call_env(
            imp,
            "ADD",
            Some(&a),
            &conf,
            &[("CNI_ARGS", "IgnoreUnknown=1;IP=192.168.0.25")],
        )
        .expect_ok("ADD with CNI_ARGS IP");
        assert_eq!(a.addresses("eth0"), ["192.168.0.25/24"], "{}", imp.label);
        let conf = net.conf(
            imp,
            "1.0.0",
            ipam.clone(),
            json!({"args": {"cni": {"ips": ["192.168.0.26"]}}}),
        );
        net.call(imp, "ADD", Some(&b), &conf).expect_ok("ADD with args.cni.ips");
        assert_eq!(b.addresses("eth0"), ["192.168.0.26/24"], "{}", imp.label);
        let conf =
            net.conf(imp, "1.0.0", ipam, json!({"runtimeConfig": {"ips": ["192.168.0.27/24"]}}));
        net.call(imp, "ADD", Some(&c), &conf).expect_ok("ADD with runtimeConfig.ips");
        assert_eq!(c.addresses("eth0"), ["192.168.0.27/24"], "{}", imp.label);
        // Taken already: refused, and nothing is left behind in the new container.
        let d = net.container();
        let conf = net.conf(imp, "1.0.0", lan_ipam("192.168.0.20", "192.168.0.29"), Value::Null);
        net.call_env(
            imp,
            "ADD",
            Some(&d),
            &conf,
            &[("CNI_ARGS", "IgnoreUnknown=1;IP=192.168.0.25")],
        )
        .expect_err("ADD of a taken IP");
    });
}

#[test]
fn dual_stack_ranges() {
    for_each_impl(|imp| {
        let mut net = Net::new("cnidual");
        let c = net.container();
        let ipam = json!({"ranges": [
            [{"subnet": "192.168.0.0/24", "rangeStart": "192.168.0.30", "rangeEnd": "192.168.0.39", "gateway": "192.168.0.1"}],
            [{"subnet": "fd00:5::/64", "rangeStart": "fd00:5::30", "rangeEnd": "fd00:5::39", "gateway": "fd00:5::1"}]
        ]});
        let conf = net.conf(imp, "1.0.0", ipam, Value::Null);
        if !imp.known.requested_ips_and_range_sets {
            // The fleet pool shares one range: two are the configuration's fault.
            assert_eq!(net.call(imp, "ADD", Some(&c), &conf).expect_err("two ranges"), 7);
            assert!(c.non_lo().is_empty(), "{}: {:?}", imp.label, c.non_lo());
            return;
        }
        let r = net.call(imp, "ADD", Some(&c), &conf).expect_ok("dual-stack ADD");
        assert_eq!(r["ips"].as_array().map(Vec::len), Some(2), "{}", imp.label);
        let mut addrs = c.addresses("eth0");
        addrs.sort();
        assert_eq!(addrs, ["192.168.0.30/24", "fd00:5::30/64"], "{}", imp.label);
        if imp.known.default_route_without_routes {
            assert_eq!(
                c.default_gateway(true).map(|g| g.to_string()).as_deref(),
                Some("fd00:5::1")
            );
        }
    });
}

#[test]
fn exhausted_range_fails_the_add() {
    for_each_impl(|imp| {
        let mut net = Net::new("cniexh");
        let (a, b) = (net.container(), net.container());
        let conf = net.conf(imp, "1.0.0", lan_ipam("192.168.0.40", "192.168.0.40"), Value::Null);
        net.call(imp, "ADD", Some(&a), &conf).expect_ok("first ADD");
        net.call(imp, "ADD", Some(&b), &conf).expect_err("ADD with the range used up");
        if imp.known.failed_add_removes_link {
            assert!(b.non_lo().is_empty(), "{}: a failed ADD left {:?}", imp.label, b.non_lo());
        } else {
            // Deviation of the reference: the link of the failed ADD stays.
            assert_eq!(b.non_lo(), ["eth0"], "{}: expected the known leak", imp.label);
        }
        // Its DEL frees the one address; then the other container gets it.
        net.call(imp, "DEL", Some(&a), &conf).expect_ok("DEL");
        net.call(imp, "DEL", Some(&b), &conf).expect_ok("DEL of the failed ADD");
        net.call(imp, "ADD", Some(&b), &conf).expect_ok("ADD once freed");
        assert_eq!(b.addresses("eth0"), ["192.168.0.40/24"], "{}", imp.label);
    });
}
