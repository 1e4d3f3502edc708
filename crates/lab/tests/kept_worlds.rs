//! Kept and stale worlds on the real kernel: the reaper removes what a dead
//! run left behind but never a world kept with `--keep`, and forgetting a kept
//! world removes its namespaces and its marker.

use std::path::Path;
use std::process::Command;

use nicslice_kernel::netns;
use nicslice_lab::World;
use nicslice_lab::kept::KeptWorlds;

/// The PID of a process that has already exited.
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

fn exists(name: &str) -> bool {
    Path::new(netns::NETNS_RUN_DIR).join(name).exists()
}

#[test]
fn the_reaper_spares_kept_worlds_and_forget_removes_them() {
    // A process's first world reaps dead runs' worlds once: done before the
    // stale namespace below exists, so that it is this test's reaper that
    // meets it.
    let _first = World::new("keepfirst");
    let kept = KeptWorlds::default();
    let pid = dead_pid();
    let stale = format!("nsl-keeptest-{pid}-0-sw");
    let (world, world_ns) = (format!("nsl-keeptest-{pid}-1"), format!("nsl-keeptest-{pid}-1-sw"));
    netns::create_named(&stale).unwrap();
    netns::create_named(&world_ns).unwrap();
    kept.mark(&world).unwrap();

    let reaped = kept.reap_stale().stale;
    let (stale_left, kept_left) = (exists(&stale), exists(&world_ns));
    let forgotten = kept.forget(&world);
    let _ = netns::delete_named(&stale);
    let _ = netns::delete_named(&world_ns);

    assert!(reaped.contains(&stale), "{reaped:?}");
    assert!(!stale_left, "the dead run's namespace was reaped");
    assert!(!reaped.contains(&world_ns) && kept_left, "the kept world was reaped");
    assert_eq!(forgotten.removed, vec![world_ns.clone()]);
    assert!(forgotten.errors.is_empty(), "{:?}", forgotten.errors);
    assert_eq!(forgotten.worlds, 1);
    assert!(!exists(&world_ns) && !kept.is_kept(&world));
}

#[test]
fn a_kept_world_survives_its_drop_and_is_marked() {
    let kept = KeptWorlds::default();
    let mut world = World::new("keepdrop");
    world.netns("sw").unwrap();
    let prefix = world.prefix().to_string();
    let name = world.name_of("sw");
    world.keep(&kept).unwrap();
    drop(world);
    let (left, marked) = (exists(&name), kept.is_kept(&prefix));
    let forgotten = kept.forget(&prefix);
    assert!(left && marked, "kept: namespace {left}, marker {marked}");
    assert_eq!(forgotten.removed, vec![name.clone()]);
    assert!(!exists(&name));
}
