//! SQLite's process-wide memory settings for short-lived processes (a CNI
//! plugin runs once per call and exits): no lookaside arena and no bulk page
//! cache allocation per connection. Both are caches that pay off over many
//! statements; in a process that runs a dozen, they are memory touched for
//! nothing (page faults are a third of a plugin's start-up) and RSS.
//! Memory statistics, which take a mutex on every allocation, are off too.
//!
//! SQLite accepts this configuration only before it initialises, which the
//! first connection does; [`for_short_lived_process`] must run before any
//! connection of the process is opened, and is a no-op afterwards.

use std::sync::Once;

use rusqlite::ffi;

/// Applies the settings once per process, if SQLite is not initialised yet.
pub fn for_short_lived_process() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: sqlite3_config is called before sqlite3_initialize (a
        // Once, ahead of the first connection of this crate); if another part
        // of the process initialised SQLite already, each call returns
        // SQLITE_MISUSE and changes nothing. The variadic arguments are the
        // types the SQLite documentation gives for each option: LOOKASIDE
        // (int slot size, int slot count), PAGECACHE (void* memory, int page
        // size, int page count; NULL/0/0 means no bulk allocation), MEMSTATUS
        // (int boolean).
        unsafe {
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_LOOKASIDE, 0 as libc::c_int, 0 as libc::c_int);
            ffi::sqlite3_config(
                ffi::SQLITE_CONFIG_PAGECACHE,
                std::ptr::null_mut::<libc::c_void>(),
                0 as libc::c_int,
                0 as libc::c_int,
            );
            ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as libc::c_int);
        }
    });
}
