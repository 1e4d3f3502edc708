//! The lease database's files under hostile or damaged conditions: an
//! unreadable file, a file that is not a lease database, a directory, files
//! of another user or writable by others, a lock held too long, recovery.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::Duration;

use nicslice_model::ipam::LeaseBook;

use super::tests::{TempDb, owner};
use super::*;

/// What a directory holds, by name.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A database holding `n` leases in network "n", written in one transaction.
fn with_leases(db: &TempDb, n: u128) {
    let mut store = CniIpamStore::open(&db.path).unwrap();
    let mut tx = store.write().unwrap();
    let pool = tx.pool("n", "10.64.0.0/16".parse().unwrap(), "all").unwrap();
    let mut book = tx.book();
    for offset in 1..=n {
        book.insert_lease(pool, offset, owner(&format!("container-{offset:05}"))).unwrap();
    }
    book.set_high_water(pool, n).unwrap();
    tx.commit().unwrap();
}

fn chown(path: &Path, uid: u32) -> bool {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: lchown of a file a test made.
    unsafe { libc::lchown(c.as_ptr(), uid, uid) == 0 }
}

#[test]
fn an_unreadable_lease_file_is_an_error_naming_it_and_left_as_it_is() {
    let db = TempDb::new("unreadable");
    with_leases(&db, 3);
    // Cut short after the first meta page's header: LMDB's marker stays,
    // the second meta page is gone.
    let bytes = std::fs::read(&db.path).unwrap();
    std::fs::write(&db.path, &bytes[..100]).unwrap();
    let before = listing(&db.dir);
    let Err(err) = CniIpamStore::open(&db.path) else { panic!("an unreadable file opened") };
    assert!(
        matches!(&err, StoreError::LeaseDbUnreadable { path, .. } if *path == db.path),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.contains(&db.path.display().to_string()), "{text}");
    assert!(text.contains("nicslice cni-leases recover"), "{text}");
    assert_eq!(std::fs::read(&db.path).unwrap(), bytes[..100], "the file is left as it was");
    assert_eq!(listing(&db.dir), before, "nothing renamed or made beside it");
}

#[test]
fn a_file_that_is_not_a_lease_database_is_never_touched() {
    // `"ipam": {"state": "/etc/passwd"}`, on a private copy.
    let db = TempDb::new("passwd");
    std::fs::create_dir_all(&db.dir).unwrap();
    let passwd = db.dir.join("passwd");
    let text = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";
    std::fs::write(&passwd, text).unwrap();
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    for _ in 0..2 {
        let Err(err) = CniIpamStore::open(&passwd) else { panic!("passwd opened as leases") };
        assert!(matches!(err, StoreError::NotALeaseDb { .. }), "{err}");
    }
    assert_eq!(std::fs::read_to_string(&passwd).unwrap(), text);
    assert_eq!(listing(&db.dir), ["passwd"], "no lock file, no copy beside it");
    // An empty file someone made (not 0600) is not ours to initialise either.
    let empty = db.dir.join("empty");
    std::fs::write(&empty, "").unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = CniIpamStore::open(&empty).err().expect("an empty file of someone else");
    assert!(err.to_string().contains("empty file of mode 0644"), "{err}");
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0);
    // Also when it appears after nicslice's first use (its lock file is there).
    let db = TempDb::new("empty-late");
    CniIpamStore::open(&db.path).unwrap().ping().unwrap();
    std::fs::remove_file(&db.path).unwrap();
    std::fs::write(&db.path, "").unwrap();
    std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = CniIpamStore::open(&db.path).err().expect("an empty file made since");
    assert!(err.to_string().contains("empty file of mode 0644"), "{err}");
    assert_eq!(std::fs::metadata(&db.path).unwrap().len(), 0, "not initialised");
}

#[test]
fn a_directory_as_the_database_is_refused_leaving_nothing_beside_it() {
    let db = TempDb::new("isdir");
    let dir = db.dir.join("leases");
    std::fs::create_dir_all(&dir).unwrap();
    let err = CniIpamStore::open(&dir).err().expect("a directory is no database");
    assert!(err.to_string().contains("a directory, not a regular file"), "{err}");
    assert_eq!(listing(&db.dir), ["leases"], "no leases-lock beside it");
}

#[test]
fn lease_files_of_others_or_writable_by_others_are_refused() {
    // Before the first use (no lock file yet) and after it (the file LMDB opened).
    for made_before in [false, true] {
        let db = TempDb::new(if made_before { "foreign-late" } else { "foreign" });
        if made_before {
            with_leases(&db, 1);
        } else {
            std::fs::create_dir_all(&db.dir).unwrap();
            std::fs::write(&db.path, "").unwrap();
        }
        std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let err = CniIpamStore::open(&db.path).err().expect("a file anyone may write");
        assert!(err.to_string().contains("writable by group or others (mode 0666)"), "{err}");
        std::fs::set_permissions(&db.path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if chown(&db.path, 4321) {
            let err = CniIpamStore::open(&db.path).err().expect("another user's file");
            assert!(err.to_string().contains("owned by uid 4321, not by you"), "{err}");
        }
    }
}

#[test]
fn a_lock_file_of_another_user_is_refused() {
    let db = TempDb::new("foreign-lock");
    with_leases(&db, 1);
    let lock = crate::files::with_suffix(&db.path, "-lock");
    if chown(&lock, 4321) {
        let err = CniIpamStore::open(&db.path).err().expect("another user's lock file");
        assert!(err.to_string().contains("owned by uid 4321"), "{err}");
    }
}

#[test]
fn a_symlinked_lease_directory_is_followed_only_when_root_made_it() {
    let db = TempDb::new("dirlink");
    let real = db.dir.join("real");
    std::fs::create_dir_all(&real).unwrap();
    let link = db.dir.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let path = link.join(CNI_IPAM_FILE);
    if std::fs::symlink_metadata(&link).unwrap().uid() == 0 {
        CniIpamStore::open(&path).unwrap().ping().unwrap();
        std::fs::remove_file(real.join(CNI_IPAM_FILE)).unwrap();
        std::fs::remove_file(real.join(format!("{CNI_IPAM_FILE}-lock"))).unwrap();
    }
    if chown(&link, 4321) {
        let err = CniIpamStore::open(&path).err().expect("a link another user made");
        assert!(err.to_string().contains("symbolic link owned by uid 4321"), "{err}");
        assert!(listing(&real).is_empty(), "nothing made through it");
    }
}

#[test]
fn recover_sets_the_file_aside_and_starts_a_new_book() {
    let db = TempDb::new("recover");
    with_leases(&db, 3);
    let bytes = std::fs::read(&db.path).unwrap();
    let err = recover(&db.path, false).expect_err("a readable book is not recovered");
    assert!(err.to_string().contains("nothing to recover"), "{err}");
    std::fs::write(&db.path, &bytes[..100]).unwrap();
    // A name already taken is not replaced: the next one is used.
    let taken = crate::files::with_suffix(&db.path, ".unreadable");
    std::fs::write(&taken, "an earlier one").unwrap();
    let done = recover(&db.path, false).unwrap();
    assert_eq!(done.set_aside, crate::files::with_suffix(&db.path, ".unreadable.1"));
    assert_eq!(std::fs::read(&done.set_aside).unwrap(), bytes[..100], "kept as it was");
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "an earlier one");
    let mut store = CniIpamStore::open(&db.path).unwrap();
    store.ping().unwrap();
    assert!(store.write().unwrap().leases("n", None).unwrap().is_empty());
}

#[test]
fn recover_moves_nothing_that_is_not_a_lease_database() {
    let db = TempDb::new("recover-passwd");
    std::fs::create_dir_all(&db.dir).unwrap();
    let passwd = db.dir.join("passwd");
    std::fs::write(&passwd, "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    let err = recover(&passwd, true).expect_err("not a lease database");
    assert!(matches!(err, StoreError::NotALeaseDb { .. }), "{err}");
    assert_eq!(listing(&db.dir), ["passwd"]);
}

#[test]
fn a_lock_held_past_the_timeout_fails_naming_the_holder() {
    let db = TempDb::new("timeout");
    let store = CniIpamStore::open(&db.path).unwrap();
    let _held = store.lock.exclusive().unwrap();
    let other = LockFile::open(&db.path).unwrap();
    let err = other.exclusive_within(Some(Duration::from_millis(100))).err().expect("it is held");
    let text = err.to_string();
    assert!(matches!(err, StoreError::LockTimeout { .. }), "{text}");
    assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
    assert!(text.contains("NICSLICE_LOCK_TIMEOUT"), "{text}");
}
