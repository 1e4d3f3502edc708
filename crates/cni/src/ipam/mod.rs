//! nicslice-ipam: host-local's configuration and behaviour over the nicslice
//! lease database (`nicslice_store::cni_ipam`), with leases keyed by network
//! name, container ID and interface name.
//!
//! Where the database lives, first match wins: `ipam.state` (a file),
//! `ipam.dataDir` (host-local's key; the file `cni-leases.mdb` inside it),
//! the directory of `NICSLICE_STATE` (beside nicslice's own `state.db`), else
//! `/run/nicslice/cni-leases.mdb`. CNI leases are kept apart from the CLI's
//! networks: they belong to the container runtime and are cleaned by its GC,
//! and they last one boot, as the namespaces they serve (see
//! `nicslice_store::cni_ipam`). With `"dhcp": {}` instead of ranges, the
//! addresses come from a DHCP server ([`dhcp`]); with `"store": {"etcd":
//! {...}}`, the range is a fleet pool shared with other hosts ([`fleet`]).

pub mod conf;
pub mod dhcp;
pub mod fleet;
pub mod resolv;

use std::net::IpAddr;
use std::path::PathBuf;

use nicslice_engine::ranges;
use nicslice_store::StoreError;
use nicslice_store::cni_ipam::{CNI_IPAM_FILE, CniIpamStore, CniOwner, DEFAULT_CNI_IPAM_PATH};
use serde_json::Value;

use crate::conf::NetConf;
use crate::env::{CallEnv, Verb};
use crate::error::{CniError, Code, Result};
use crate::result::{CniResult, IpConfig};
pub use conf::IpamConf;

/// Runs one verb of nicslice-ipam; ADD returns the result.
pub fn handle(verb: Verb, net: &NetConf, env: &CallEnv) -> Result<Option<CniResult>> {
    let ipam = net.ipam.as_ref().ok_or_else(|| {
        CniError::config("nicslice-ipam needs an \"ipam\" object with its ranges")
    })?;
    let conf = IpamConf::parse(ipam)?;
    if let Some(dhcp) = &conf.dhcp {
        return dhcp::handle(verb, net, env, &conf, dhcp);
    }
    if let Some(etcd) = &conf.etcd {
        return fleet::handle(verb, net, env, &conf, etcd);
    }
    let path = state_path(&conf);
    let open = || {
        CniIpamStore::open(&path).map_err(|e| {
            let e = store_error(e);
            if verb == Verb::Status { CniError::new(Code::NotAvailable, e.msg) } else { e }
        })
    };
    match verb {
        Verb::Add => add(&mut open()?, net, env, &conf).map(Some),
        Verb::Del => {
            let mut store = open()?;
            let mut tx = store.write().map_err(store_error)?;
            tx.release_owner(&net.name, &owner(env))?;
            tx.commit()?;
            Ok(None)
        }
        Verb::Check => {
            let mut store = open()?;
            let tx = store.write().map_err(store_error)?;
            if tx.leases(&net.name, Some(&owner(env)))?.is_empty() {
                return Err(CniError::new(
                    Code::UnknownContainer,
                    format!(
                        "nicslice-ipam: no address is leased to container {} interface {} in network {}",
                        env.container_id, env.ifname, net.name
                    ),
                ));
            }
            Ok(None)
        }
        Verb::Status => {
            open()?.ping().map_err(|e| CniError::new(Code::NotAvailable, CniError::from(e).msg))?;
            Ok(None)
        }
        Verb::Gc => {
            let valid = valid_attachments(&net.tree()?)?;
            let mut store = open()?;
            let mut tx = store.write().map_err(store_error)?;
            tx.release_unless(&net.name, |o| valid.contains(o))?;
            tx.commit()?;
            Ok(None)
        }
        Verb::Version => Ok(None),
    }
}

/// Whether `net` delegates to nicslice-ipam with `"dhcp"` (the link
/// plugin then refuses the links DHCP cannot work on).
pub fn asks_dhcp(net: &NetConf) -> bool {
    net.ipam_type() == Some("nicslice-ipam")
        && net.ipam.as_ref().is_some_and(|i| i.get("dhcp").is_some_and(|d| !d.is_null()))
}

/// The lease database's failures that have a CNI code of their own: an
/// unreadable database or a lock held too long is "try again later" (11:
/// the runtime retries, and no address is handed out meanwhile); a file
/// that is no lease database is the configuration's fault (7). The rest as
/// every store error (`CniError::from`).
fn store_error(e: StoreError) -> CniError {
    let code = match &e {
        StoreError::LeaseDbUnreadable { .. } | StoreError::LockTimeout { .. } => {
            Code::TryAgainLater
        }
        StoreError::NotALeaseDb { .. } => Code::InvalidConfig,
        _ => return CniError::from(e),
    };
    CniError::new(code, crate::error::chain(&e))
}

fn owner(env: &CallEnv) -> CniOwner {
    CniOwner { container_id: env.container_id.clone(), ifname: env.ifname.clone() }
}

fn add(
    store: &mut CniIpamStore,
    net: &NetConf,
    env: &CallEnv,
    conf: &IpamConf,
) -> Result<CniResult> {
    let requested = requested_ips(net, env)?;
    let dns = match &conf.resolv_conf {
        Some(path) => resolv::read(path)?,
        None => Default::default(),
    };
    let owner = owner(env);
    let mut tx = store.write().map_err(store_error)?;
    if let Some(held) = tx.leases(&net.name, Some(&owner))?.first() {
        return Err(CniError::new(
            Code::AddressInUse,
            format!(
                "{} has been allocated to {} interface {}, duplicate allocation is not allowed",
                held.ip, env.container_id, env.ifname
            ),
        ));
    }
    // issue 14: quarantined addresses whose cool-down is over return first.
    if let Some(probe) = crate::linkconf::probe_spec(net)? {
        tx.release_quarantine(&net.name, probe.cooldown_s)?;
    }
    let ips = ranges::allocate(&mut tx, &net.name, &conf.range_sets, &owner, &requested)?
        .into_iter()
        .map(|l| IpConfig { address: l.address, gateway: Some(l.gateway), interface: None })
        .collect();
    tx.commit()?;
    Ok(CniResult { interfaces: Vec::new(), ips, routes: conf.routes.clone(), dns })
}

/// `CNI_ARGS IP=a,b`, `runtimeConfig.ips` and `args.cni.ips` (a prefix, if
/// written, is ignored: the range decides it).
pub(crate) fn requested_ips(net: &NetConf, env: &CallEnv) -> Result<Vec<IpAddr>> {
    let from_env = env.arg("IP").into_iter().flat_map(|v| v.split(','));
    let mut out: Vec<IpAddr> = Vec::new();
    for text in from_env.chain(net.requested_ips.iter().map(String::as_str)) {
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let bare = text.split_once('/').map_or(text, |(ip, _)| ip);
        let ip: IpAddr = bare
            .parse()
            .map_err(|_| CniError::config(format!("requested IP {text:?} is not an IP address")))?;
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

/// GC's test of whether an attachment (container ID, interface) is to be
/// kept, for the stores keyed by those two (DHCP holders, fleet holders)
/// and the routes of the shared shim (`hostAccess`).
pub(crate) fn kept_by_gc(net: &NetConf) -> Result<impl Fn(&str, &str) -> bool> {
    let valid = valid_attachments(&net.tree()?)?;
    Ok(move |container_id: &str, ifname: &str| {
        valid.iter().any(|o| o.container_id == container_id && o.ifname == ifname)
    })
}

/// GC's list of attachments to keep: `cni.dev/valid-attachments` (spec 1.1)
/// or `cni.dev/attachments` (its draft name, which some runtimes send).
fn valid_attachments(raw: &Value) -> Result<Vec<CniOwner>> {
    let list = raw
        .get("cni.dev/valid-attachments")
        .or_else(|| raw.get("cni.dev/attachments"))
        .ok_or_else(|| CniError::config("GC needs cni.dev/valid-attachments"))?;
    let items = list
        .as_array()
        .ok_or_else(|| CniError::config("cni.dev/valid-attachments is not a list"))?;
    items
        .iter()
        .map(|a| {
            let get = |k: &str| a.get(k).and_then(Value::as_str).map(str::to_string);
            match (get("containerID"), get("ifname")) {
                (Some(container_id), Some(ifname)) => Ok(CniOwner { container_id, ifname }),
                _ => Err(CniError::config(format!("attachment {a} lacks containerID or ifname"))),
            }
        })
        .collect()
}

/// Where the lease database is (see the module docs).
pub fn state_path(conf: &IpamConf) -> PathBuf {
    if let Some(p) = &conf.state {
        return p.clone();
    }
    if let Some(dir) = std::env::var_os("NICSLICE_STATE")
        .map(PathBuf::from)
        .and_then(|p| p.parent().map(PathBuf::from))
        .filter(|d| !d.as_os_str().is_empty())
    {
        return dir.join(CNI_IPAM_FILE);
    }
    PathBuf::from(DEFAULT_CNI_IPAM_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gc_accepts_both_keys() {
        let a = json!({"cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}]});
        assert_eq!(valid_attachments(&a).unwrap()[0].container_id, "c");
        let b = json!({"cni.dev/attachments":[{"containerID":"d","ifname":"net1"}]});
        assert_eq!(valid_attachments(&b).unwrap()[0].ifname, "net1");
        assert!(valid_attachments(&json!({})).is_err());
        assert!(valid_attachments(&json!({"cni.dev/attachments":[{"containerID":"d"}]})).is_err());
    }

    #[test]
    fn an_unreadable_lease_file_fails_add_with_11_and_status_with_50_naming_it() {
        let dir = std::env::temp_dir().join(format!("cni-ipam-unreadable-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("leases.mdb");
        let conf = NetConf::parse(
            format!(
                r#"{{"cniVersion":"1.1.0","name":"n","type":"nicslice-ipam","ipam":{{
                        "type":"nicslice-ipam","state":"{}",
                        "ranges":[[{{"subnet":"10.77.0.0/24"}}]]}}}}"#,
                path.display()
            )
            .into_bytes(),
        )
        .unwrap();
        let env = CallEnv::from_vars(&[
            ("CNI_CONTAINERID", "c1".into()),
            ("CNI_IFNAME", "eth0".into()),
            ("CNI_NETNS", "/run/netns/x".into()),
        ])
        .unwrap();
        // A book with a lease, then cut short: LMDB's marker stays, the rest does not read.
        handle(Verb::Add, &conf, &env).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..100]).unwrap();
        let add = handle(Verb::Add, &conf, &env).expect_err("ADD fails");
        assert_eq!(add.code_number(), 11, "{}", add.msg);
        let status = handle(Verb::Status, &conf, &env).expect_err("STATUS fails");
        assert_eq!(status.code_number(), 50, "{}", status.msg);
        assert!(status.msg.contains(&path.display().to_string()), "{}", status.msg);
        assert_eq!(std::fs::read(&path).unwrap(), bytes[..100], "left as it was");
        // A file that is no lease database: the configuration's fault.
        std::fs::write(&path, "root:x:0:0:root:/root:/bin/bash\n".repeat(20)).unwrap();
        let _ = std::fs::remove_file(dir.join("leases.mdb-lock"));
        let add = handle(Verb::Add, &conf, &env).expect_err("ADD fails");
        assert_eq!(add.code_number(), 7, "{}", add.msg);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn requested_ips_from_every_source() {
        let net = NetConf::parse(
            br#"{"cniVersion":"1.1.0","name":"n","type":"nicslice-ipam",
                "runtimeConfig":{"ips":["10.0.0.9/24"]},"args":{"cni":{"ips":["fd00::9"]}}}"#
                .to_vec(),
        )
        .unwrap();
        let env = CallEnv::from_vars(&[("CNI_ARGS", "IP=10.0.0.8,10.0.0.9".into())]).unwrap();
        let ips: Vec<String> =
            requested_ips(&net, &env).unwrap().iter().map(ToString::to_string).collect();
        assert_eq!(ips, ["10.0.0.8", "10.0.0.9", "fd00::9"]);
        let env = CallEnv::from_vars(&[("CNI_ARGS", "IP=ten".into())]).unwrap();
        assert!(requested_ips(&net, &env).is_err());
    }
}
