//! Commands killed part-way: 100 attaches and 100 detaches, each SIGKILLed
//! after a random 0-8 ms, each followed by the next command, which must end
//! what the killed one left (undo an attach, finish a detach). After every
//! round: no link without a record, no record without a link, every
//! address on one link only and the one recorded for it; at the end every
//! address of the pool can be leased again. And SIGTERM/SIGINT: the command
//! itself undoes its work before it exits, with no command after it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use nicslice_kernel::Netns;
use nicslice_store::{Store, StoreRead};

/// The pool: 192.168.0.128/27, 32 addresses for 12 namespaces, so an address
/// leaked by a killed command would soon be missed.
const RANGE: &str = "192.168.0.128/27";
const NAMESPACES: usize = 12;

/// xorshift64: enough randomness for kill delays; the seed is printed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed =
            std::env::var("CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("CRASH_SEED={seed}");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A delay of 0 to `span` (8 ms here; under the VM stage's emulation,
    /// where a command takes many times longer, the time an attach takes).
    fn delay(&mut self, span: Duration) -> Duration {
        Duration::from_micros(self.next() % (span.as_micros() as u64 + 1))
    }
}

fn spawn(lab: &Lab, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .arg("--state")
        .arg(&lab.state)
        .arg("--host-netns")
        .arg(&lab.host.netns_name)
        .args(args)
        .env_remove("NICSLICE_FAIL_AT")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nicslice")
}

/// Starts `args` and sends `signal` after `delay`; waits for the end.
fn run_and_signal(lab: &Lab, args: &[&str], signal: libc::c_int, delay: Duration) {
    let mut child = spawn(lab, args);
    std::thread::sleep(delay);
    // SAFETY: a signal to our own child, still unreaped (its pid is ours).
    unsafe { libc::kill(child.id() as libc::pid_t, signal) };
    child.wait().unwrap();
}

/// The macvlan links of each namespace with their IPv4 addresses, and the
/// recorded endpoints with theirs: they must be the same, and no address
/// may appear twice.
fn assert_consistent(lab: &Lab, namespaces: &[(Netns, String)], round: &str) {
    // The next command first: it ends what the killed one left; the kernel
    // is read after it.
    let mut recorded: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for ep in lab.json(&["endpoint", "ls"]).as_array().unwrap() {
        assert_eq!(ep["state"], "attached", "{round}: {ep}");
        let name = ep["netns"].as_str().unwrap().trim_start_matches("/run/netns/").to_string();
        let addrs = ep["addresses"].as_array().unwrap();
        let addrs = addrs.iter().map(|a| a.as_str().unwrap().to_string()).collect();
        recorded.insert(name, (ep["mac"].as_str().unwrap_or_default().to_string(), addrs));
    }
    let mut on_links: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for (ns, name) in namespaces {
        for l in links(ns) {
            if l.kind.as_deref() == Some("macvlan") {
                let mac = l.mac.map(|m| m.to_string()).unwrap_or_default();
                on_links.insert(name.clone(), (mac, addresses(ns, &l.name)));
                assert_eq!(l.name, "eth0", "{round}: a link under another name in {name}");
            }
        }
    }
    assert_eq!(on_links, recorded, "{round}: links (left) and records (right) differ");
    let all: Vec<&String> = on_links.values().flat_map(|(_, a)| a).collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), distinct.len(), "{round}: an address twice: {all:?}");
    // No intent left behind by the killed command either.
    let store = Store::open(&lab.state).unwrap();
    assert!(store.endpoints_in_flight().unwrap().is_empty(), "{round}: an intent was left");
}

fn attached(lab: &Lab) -> BTreeSet<String> {
    let eps = lab.json(&["endpoint", "ls"]);
    eps.as_array().unwrap().iter().map(|e| e["netns"].as_str().unwrap().to_string()).collect()
}

#[test]
fn killed_attaches_and_detaches_are_ended_by_the_next_command() {
    let started = Instant::now();
    let mut lab = Lab::new("crash");
    lab.lan("lan", &["--ip-range", RANGE]);
    let namespaces: Vec<(Netns, String)> =
        (0..NAMESPACES).map(|i| lab.netns(&format!("c{i}"))).collect();
    let mut rng = Rng::new();
    // The window the kills land in: 8 ms, or an attach's own time where
    // that is longer (the VM stage emulates its CPU).
    let t = Instant::now();
    lab.ok(&["attach", "lan", "--netns", &namespaces[0].1]);
    let span = t.elapsed().max(Duration::from_millis(8)).min(Duration::from_millis(8) * 50);
    let span =
        if std::env::var_os("NICSLICE_VM").is_some() { span } else { Duration::from_millis(8) };
    lab.ok(&["detach", "lan", "--netns", &namespaces[0].1]);
    let (mut attaches, mut detaches, mut cut_short) = (0, 0, 0);
    while attaches < 100 || detaches < 100 {
        let busy = attached(&lab);
        let path = |name: &String| format!("/run/netns/{name}");
        let free: Vec<&String> =
            namespaces.iter().map(|(_, n)| n).filter(|n| !busy.contains(&path(n))).collect();
        let taken: Vec<&String> =
            namespaces.iter().map(|(_, n)| n).filter(|n| busy.contains(&path(n))).collect();
        let attach = detaches >= 100
            || (attaches < 100 && (taken.is_empty() || rng.next().is_multiple_of(2)));
        let round = if attach && !free.is_empty() {
            let name = free[rng.next() as usize % free.len()];
            attaches += 1;
            run_and_signal(
                &lab,
                &["attach", "lan", "--netns", name],
                libc::SIGKILL,
                rng.delay(span),
            );
            format!("attach {attaches} in {name}")
        } else if !taken.is_empty() {
            let name = taken[rng.next() as usize % taken.len()];
            detaches += 1;
            run_and_signal(
                &lab,
                &["detach", "lan", "--netns", name],
                libc::SIGKILL,
                rng.delay(span),
            );
            format!("detach {detaches} in {name}")
        } else {
            // Nothing attached left to detach: attach one without a kill.
            lab.ok(&["attach", "lan", "--netns", free[0]]);
            continue;
        };
        // What the kill left, before any command ends it.
        if !Store::open(&lab.state).unwrap().endpoints_in_flight().unwrap().is_empty() {
            cut_short += 1;
        }
        // The next command (`endpoint ls` inside) ends what the killed one left.
        assert_consistent(&lab, &namespaces, &round);
    }
    eprintln!("{cut_short} of 200 kills left an intent for the next command");
    assert!(cut_short > 0, "no kill landed mid-work: nothing was tested");

    // Every address of the pool can be leased again: two per namespace
    // (eth0 and eth1) until all 32 are taken, each asked for by address.
    for name in attached(&lab) {
        lab.ok(&["detach", "lan", "--netns", &name]);
    }
    let pool: Vec<String> = (128..160).map(|i| format!("192.168.0.{i}")).collect();
    for (i, ip) in pool.iter().enumerate() {
        let name = &namespaces[i % NAMESPACES].1;
        let ifname = format!("eth{}", i / NAMESPACES);
        lab.ok(&["attach", "lan", "--netns", name, "--ifname", &ifname, "--ip", ip]);
    }
    let (spare, spare_name) = lab.netns("spare");
    lab.fails(&["attach", "lan", "--netns", &spare_name], "exhausted");
    assert!(non_lo(&spare).is_empty());
    eprintln!("crash test: 200 killed commands in {:?}", started.elapsed());
}

/// SIGTERM and SIGINT at a random moment: the attach is either whole or
/// undone by the command itself (read straight from the state and the
/// kernel, before any other nicslice command could clean up after it).
#[test]
fn sigterm_and_sigint_undo_an_attach_before_exiting() {
    let mut lab = Lab::new("sigterm");
    lab.lan("lan", &["--ip-range", RANGE]);
    let (ns, name) = lab.netns("c");
    // Signals spread over the time an attach takes here.
    let t = Instant::now();
    lab.ok(&["attach", "lan", "--netns", &name]);
    let span = t.elapsed().as_micros() as u64 * 5 / 4;
    lab.ok(&["detach", "lan", "--netns", &name]);
    let mut rng = Rng::new();
    let (mut undone, mut said_so) = (0, 0);
    for i in 0..40 {
        let signal = if i % 2 == 0 { libc::SIGTERM } else { libc::SIGINT };
        let delay = Duration::from_micros(rng.next() % span);
        let mut child = spawn(&lab, &["attach", "lan", "--netns", &name]);
        std::thread::sleep(delay);
        // SAFETY: a signal to our own child, still unreaped.
        unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        let status = child.wait().unwrap();
        // Stopped mid-work, the command undid it and exited with 128 + the signal.
        if status.code() == Some(128 + signal) {
            said_so += 1;
        }
        let store = Store::open(&lab.state).unwrap();
        assert!(store.endpoints_in_flight().unwrap().is_empty(), "round {i}: intent left");
        let network = store.list_networks().unwrap().remove(0);
        let records = store.endpoints(network.id).unwrap();
        let leases = store.leases_in(network.id).unwrap();
        drop(store);
        match link(&ns, "eth0") {
            Some(l) => {
                assert_eq!(records.len(), 1, "round {i}: link without a record");
                assert_eq!(records[0].mac, l.mac, "round {i}");
                assert_eq!(leases.len(), 1, "round {i}: {leases:?}");
                lab.ok(&["detach", "lan", "--netns", &name]);
            }
            None => {
                assert!(records.is_empty(), "round {i}: record without a link: {records:?}");
                assert!(leases.is_empty(), "round {i}: lease kept: {leases:?}");
                undone += 1;
            }
        }
    }
    eprintln!("{undone} of 40 attaches stopped before they were whole, {said_so} of them mid-work");
    assert!(said_so > 0, "no signal came mid-work: the undo path was not exercised");
}
