//! The state's files: what paths are refused before anything is made,
//! the modes of what is made whatever the umask, and the writers' queue
//! under a crowd and past its timeout.

use std::io::BufRead;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use nicslice_store::cni_ipam::CniIpamStore;
use nicslice_store::{Store, StoreError, StoreRead};

use crate::common::{TempDir, network};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o7777
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn dev_null_as_the_state_is_refused_and_nothing_made_beside_it() {
    let beside =
        ["-journal", "-wal", "-shm", "-lock"].map(|s| PathBuf::from(format!("/dev/null{s}")));
    let before: Vec<bool> = beside.iter().map(|p| p.exists()).collect();
    let err = Store::open("/dev/null").err().expect("/dev/null is no database");
    assert!(err.to_string().contains("a character device, not a regular file"), "{err}");
    let after: Vec<bool> = beside.iter().map(|p| p.exists()).collect();
    assert_eq!(before, after, "no /dev/null-journal or other file made");
}

#[test]
fn a_directory_or_a_foreign_file_as_the_state_is_refused() {
    let dir = TempDir::new("state-refused");
    let db = dir.db();
    std::fs::create_dir_all(&db).unwrap();
    let err = Store::open(&db).err().expect("a directory is no database");
    assert!(err.to_string().contains("a directory, not a regular file"), "{err}");
    assert_eq!(listing(db.parent().unwrap()), ["state.db"], "nothing made beside it");
    std::fs::remove_dir(&db).unwrap();
    // Made before by someone else and left writable by all.
    drop(Store::open(&db).unwrap());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = Store::open(&db).err().expect("a state file anyone may write");
    assert!(err.to_string().contains("writable by group or others (mode 0666)"), "{err}");
    // Not a database: refused, left as it was.
    std::fs::write(&db, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = Store::open(&db).err().expect("a text file is no database");
    assert!(matches!(err, StoreError::NotAStateDb { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&db).unwrap(), "root:x:0:0:root:/root:/bin/bash\n");
}

#[test]
fn an_existing_state_readable_by_others_is_narrowed() {
    let dir = TempDir::new("narrow");
    drop(Store::open(dir.db()).unwrap());
    std::fs::set_permissions(dir.db(), std::fs::Permissions::from_mode(0o644)).unwrap();
    drop(Store::open(dir.db()).unwrap());
    assert_eq!(mode(&dir.db()), 0o600);
}

/// Set in the child of the test below: where it makes its files.
const UMASK_DIR: &str = "NICSLICE_STORE_TEST_UMASK_DIR";

/// Child side of `files_are_0600_and_directories_0755_under_umask_000`.
#[test]
#[ignore = "spawned by files_are_0600_and_directories_0755_under_umask_000"]
fn child_makes_files_under_umask_000() {
    let Some(base) = std::env::var_os(UMASK_DIR).map(PathBuf::from) else { return };
    // SAFETY: umask only sets this process's mask.
    unsafe { libc::umask(0) };
    let mut store = Store::open(base.join("var/lib/nicslice/state.db")).unwrap();
    let tx = store.write().unwrap();
    tx.insert_network(&network("lan", "ens160", &["10.8.0.0/16"]), None).unwrap();
    tx.commit().unwrap();
    assert_eq!(store.list_networks().unwrap().len(), 1);
    let mut leases = CniIpamStore::open(base.join("run/nicslice/cni-leases.mdb")).unwrap();
    leases.write().unwrap().commit().unwrap();
    println!("MADE");
    // Kept open, so that SQLite's -wal and -shm files are there to be seen.
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

#[test]
fn files_are_0600_and_directories_0755_under_umask_000() {
    let dir = TempDir::new("umask");
    let base = dir.db().parent().unwrap().parent().unwrap().parent().unwrap().to_owned();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "files::child_makes_files_under_umask_000", "--ignored", "--nocapture"])
        .env(UMASK_DIR, &base)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let made = (&mut out).lines().map_while(Result::ok).any(|l| l.contains("MADE"));
    let checked = std::panic::catch_unwind(|| {
        assert!(made, "the child made its files");
        for d in ["var", "var/lib", "var/lib/nicslice", "run", "run/nicslice"] {
            assert_eq!(mode(&base.join(d)), 0o755, "{d}");
        }
        for f in [
            "var/lib/nicslice/state.db",
            "var/lib/nicslice/state.db-wal",
            "var/lib/nicslice/state.db-shm",
            "var/lib/nicslice/state.db-lock",
            "run/nicslice/cni-leases.mdb",
            "run/nicslice/cni-leases.mdb-lock",
        ] {
            assert_eq!(mode(&base.join(f)), 0o600, "{f}");
        }
    });
    drop(child.stdin.take());
    std::io::copy(&mut out, &mut std::io::sink()).unwrap();
    assert!(child.wait().unwrap().success());
    checked.unwrap();
}

#[test]
fn two_hundred_fifty_six_concurrent_writers_all_finish() {
    // Each transaction holds the lock 25 ms, as a command doing kernel work
    // inside it: 6.4 s in all, longer than SQLite's old 5 s busy timeout,
    // which its polling busy handler made unfair (27 of 288 detaches failed).
    const WRITERS: usize = 256;
    let dir = TempDir::new("crowd");
    let mut store = Store::open(dir.db()).unwrap();
    let tx = store.write().unwrap();
    let net = tx.insert_network(&network("lan", "ens160", &["10.8.0.0/16"]), None).unwrap();
    tx.commit().unwrap();
    drop(store);
    let barrier = Arc::new(Barrier::new(WRITERS));
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (path, barrier) = (dir.db(), Arc::clone(&barrier));
            std::thread::spawn(move || -> Result<std::net::IpAddr, StoreError> {
                barrier.wait();
                let mut store = Store::open(&path)?;
                let tx = store.write()?;
                let lease = tx.allocate(net, 0, None, None)?;
                std::thread::sleep(Duration::from_millis(25));
                tx.commit()?;
                Ok(lease.ip)
            })
        })
        .collect();
    let results: Vec<_> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let failed: Vec<String> =
        results.iter().filter_map(|r| r.as_ref().err()).map(ToString::to_string).collect();
    assert!(failed.is_empty(), "{} of {WRITERS} failed: {:?}", failed.len(), failed.first());
    let mut ips: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), WRITERS, "an address was handed out twice");
}

/// Set in the child of the test below: the database whose queue it holds.
const HOLD_DB: &str = "NICSLICE_STORE_TEST_HOLD_DB";

/// Child side of `a_writer_waiting_past_the_timeout_is_told_the_holders_pid`.
#[test]
#[ignore = "spawned by a_writer_waiting_past_the_timeout_is_told_the_holders_pid"]
fn child_holds_a_write_transaction() {
    let Some(path) = std::env::var_os(HOLD_DB) else { return };
    let mut store = Store::open(path).unwrap();
    let _tx = store.write().unwrap();
    println!("HOLDING");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

#[test]
fn a_writer_waiting_past_the_timeout_is_told_the_holders_pid() {
    let dir = TempDir::new("holder");
    drop(Store::open(dir.db()).unwrap());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "files::child_holds_a_write_transaction", "--ignored", "--nocapture"])
        .env(HOLD_DB, dir.db())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let holding = (&mut out).lines().map_while(Result::ok).any(|l| l.contains("HOLDING"));
    let mut store = Store::open(dir.db()).unwrap();
    store.set_lock_timeout(Duration::from_millis(300)).unwrap();
    let started = std::time::Instant::now();
    let result = store.write().map(drop);
    let waited = started.elapsed();
    drop(child.stdin.take());
    std::io::copy(&mut out, &mut std::io::sink()).unwrap();
    let _ = child.wait();
    assert!(holding, "the child took the lock");
    let err = result.expect_err("the lock is held by the child");
    let text = err.to_string();
    assert!(matches!(err, StoreError::LockTimeout { .. }), "{text}");
    assert!(text.contains(&format!("pid {}", child.id())), "{text}");
    assert!(text.contains("NICSLICE_LOCK_TIMEOUT"), "{text}");
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(5), "{waited:?}");
    // Released with the child: the next writer goes through.
    store.write().unwrap().commit().unwrap();
}
