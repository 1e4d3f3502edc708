//! `nicslice cni-leases recover FILE`: an unreadable lease database is set
//! aside (never replacing anything) and a new one started; a readable one,
//! or a file that is no lease database, is left alone.

use std::path::Path;
use std::process::{Command, Output};

use nicslice_model::ipam::LeaseBook;
use nicslice_store::cni_ipam::{CniIpamStore, CniOwner};

fn recover(file: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nicslice"))
        .args(["cni-leases", "recover"])
        .arg(file)
        .output()
        .unwrap()
}

#[test]
fn recover_sets_an_unreadable_book_aside_and_says_what_it_could_not_rebuild() {
    let dir = std::env::temp_dir().join(format!("nsl-cni-leases-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let file = dir.join("cni-leases.mdb");
    {
        let mut store = CniIpamStore::open(&file).unwrap();
        let mut tx = store.write().unwrap();
        let pool = tx.pool("n", "10.5.0.0/24".parse().unwrap(), "all").unwrap();
        let owner = CniOwner { container_id: "c1".into(), ifname: "eth0".into() };
        tx.book().insert_lease(pool, 5, owner).unwrap();
        tx.commit().unwrap();
    }
    let out = recover(&file);
    assert!(!out.status.success(), "a readable book is left alone");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nothing to recover"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..100]).unwrap();
    let err = CniIpamStore::open(&file).err().expect("unreadable").to_string();
    assert!(err.contains("cni-leases recover"), "{err}");
    let out = recover(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let aside = dir.join("cni-leases.mdb.unreadable");
    assert!(stdout.contains(&format!("as {}", aside.display())), "{stdout}");
    assert!(stdout.contains("No lease was rebuilt"), "{stdout}");
    assert_eq!(std::fs::read(&aside).unwrap(), bytes[..100], "the old file is kept");
    let mut store = CniIpamStore::open(&file).unwrap();
    assert!(store.write().unwrap().leases("n", None).unwrap().is_empty());
    drop(store);

    let passwd = dir.join("passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let out = recover(&passwd);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a CNI lease database"));
    assert_eq!(std::fs::read_to_string(&passwd).unwrap(), "root:x:0:0:root:/root:/bin/bash\n");
    assert!(!dir.join("passwd.unreadable").exists() && !dir.join("passwd-lock").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}
