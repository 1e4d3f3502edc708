//! The spec's edge cases: missing environment, bad JSON, unknown versions,
//! invalid interface names, VERSION, and result forms per version.

use serde_json::{Value, json};

use crate::harness::{Net, for_each_impl, lan_ipam};

#[test]
fn missing_environment_bad_json_and_bad_names() {
    for_each_impl(|imp| {
        let mut net = Net::new("cnispec");
        let c = net.container();
        let conf = net.conf(imp, "1.0.0", lan_ipam("192.168.0.50", "192.168.0.59"), Value::Null);
        let code = net
            .call_env(imp, "ADD", Some(&c), &conf, &[("CNI_NETNS", "")])
            .expect_err("no CNI_NETNS");
        assert_eq!(code, 4, "{}", imp.label);
        let code = net
            .call_env(imp, "ADD", Some(&c), &conf, &[("CNI_CONTAINERID", "")])
            .expect_err("no id");
        assert_eq!(code, 4, "{}", imp.label);
        let code = net
            .call_env(imp, "ADD", Some(&c), &conf, &[("CNI_IFNAME", "much-too-long-name0")])
            .expect_err("ifname");
        assert_eq!(code, 4, "{}", imp.label);
        let code = net
            .call_env(imp, "ADD", Some(&c), &conf, &[("CNI_COMMAND", "FROB")])
            .expect_err("verb");
        assert_eq!(code, 4, "{}", imp.label);
        assert!(c.non_lo().is_empty(), "{}: a refused call made {:?}", imp.label, c.non_lo());

        let bad_json = crate::harness::run_plugin(
            &net.host.netns,
            &imp.dir.join(imp.macvlan),
            &[
                ("CNI_COMMAND", "ADD".into()),
                ("CNI_CONTAINERID", c.id.clone()),
                ("CNI_NETNS", c.path.clone()),
                ("CNI_IFNAME", "eth0".into()),
                ("CNI_PATH", imp.dir.display().to_string()),
            ],
            b"{not json",
        );
        let code = bad_json.expect_err("bad JSON");
        // The spec's "decoding failure" is 6; the reference plugins answer 999.
        assert!(code == 6 || code == 999, "{}: code {code}", imp.label);
    });
}

#[test]
fn unknown_versions_and_version_answers() {
    for_each_impl(|imp| {
        let mut net = Net::new("cniver");
        let c = net.container();
        let conf = net.conf(imp, "0.9.9", lan_ipam("192.168.0.60", "192.168.0.69"), Value::Null);
        let code = net.call(imp, "ADD", Some(&c), &conf).expect_err("unknown version");
        assert_eq!(code, 1, "{}", imp.label);
        let v =
            net.call(imp, "VERSION", None, &json!({"cniVersion": "1.0.0"})).expect_ok("VERSION");
        let supported: Vec<&str> =
            v["supportedVersions"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for needed in ["0.3.0", "0.3.1", "0.4.0", "1.0.0"] {
            assert!(supported.contains(&needed), "{}: {supported:?}", imp.label);
        }
        assert_eq!(
            supported.contains(&"1.1.0"),
            imp.known.spec_1_1,
            "{}: {supported:?}",
            imp.label
        );
        let conf = net.conf(imp, "1.1.0", lan_ipam("192.168.0.60", "192.168.0.69"), Value::Null);
        let add = net.call(imp, "ADD", Some(&c), &conf);
        if imp.known.spec_1_1 {
            let r = add.expect_ok("ADD 1.1.0");
            assert_eq!(r["cniVersion"], "1.1.0");
            assert!(r["interfaces"][0]["mtu"].as_u64().is_some(), "1.1.0 results carry the MTU");
        } else {
            // Deviation of the reference: spec 1.0.0 at most.
            assert_eq!(add.expect_err("ADD 1.1.0"), 1, "{}", imp.label);
        }
    });
}

#[test]
fn results_in_every_old_version() {
    for_each_impl(|imp| {
        let mut net = Net::new("cniold");
        for version in ["0.3.0", "0.3.1"] {
            let c = net.container();
            let conf =
                net.conf(imp, version, lan_ipam("192.168.0.70", "192.168.0.79"), Value::Null);
            let r = net.call(imp, "ADD", Some(&c), &conf).expect_ok("ADD");
            assert_eq!(r["cniVersion"], version, "{}", imp.label);
            assert_eq!(r["ips"][0]["version"], "4", "{}", imp.label);
            assert_eq!(r["ips"][0]["interface"], 0, "{}", imp.label);
            // CHECK does not exist before 0.4.0.
            let mut check = conf.clone();
            check["prevResult"] = r;
            net.call(imp, "CHECK", Some(&c), &check).expect_err("CHECK before 0.4.0");
        }
    });
}
