//! `Store`: opening the database (its files, directories, pragmas,
//! migrations) and starting transactions. Queries live in `read` and `write`.
//!
//! Files: the directory is made 0755 and the database 0600 whatever the
//! umask (SQLite gives its `-wal` and `-shm` files the database's mode); a
//! path that is not a regular file (a directory, `/dev/null`), a file of
//! another user or one others may write is refused before SQLite creates
//! anything beside it (`files`). An existing database readable by others
//! (earlier versions made it 0644) is narrowed to 0600.
//!
//! Writers queue on a `flock` of `<state>-lock` before SQLite's own lock
//! (`crate::flock`: the kernel wakes a waiter at the release, where
//! SQLite's busy handler polls and starves the oldest waiters under a
//! crowd). Every wait, the queue's and SQLite's, is bounded by
//! `NICSLICE_LOCK_TIMEOUT` (seconds, default 30).

use std::fs::File;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::ffi::c_int;

use rusqlite::config::DbConfig;
use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::Context;
use crate::files::{self, with_suffix};
use crate::flock::{self, Taken};
use crate::{StoreError, WriteTx, schema};

/// Where the state lives unless `--state` or `NICSLICE_STATE` says otherwise.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/nicslice/state.db";

/// How many pages a commit takes the WAL to before it checkpoints it (see
/// [`Store::open`]).
const WAL_CHECKPOINT_PAGES: c_int = 100;

/// The files SQLite keeps beside the database.
const SIDE_FILES: [&str; 3] = ["-wal", "-shm", "-journal"];

/// One connection to the state database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    /// The writers' queue (`<state>-lock`, module docs).
    queue: File,
    queue_path: PathBuf,
    lock_timeout: Duration,
}

/// A place in the writers' queue, held until dropped (after the
/// transaction it guards, which is declared before it).
#[must_use]
pub(crate) struct Queued<'a> {
    file: &'a File,
    taken: Option<Taken>,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if let Some(taken) = self.taken.take() {
            flock::unlock(self.file, taken);
        }
    }
}

/// A read-only snapshot: every read in it sees the same state.
pub struct ReadTx<'a> {
    pub(crate) tx: Transaction<'a>,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and its parent
    /// directories, and brings its schema up to date.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, StoreError> {
        let path = path.as_ref().to_owned();
        let lock_timeout = flock::lock_timeout()?;
        prepare_files(&path)?;
        let queue_path = with_suffix(&path, "-lock");
        let queue = files::open_lock_file(&queue_path)?;
        let open_err = |source| StoreError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        conn.busy_timeout(lock_timeout).map_err(open_err)?;
        // A read first: the journal mode of a WAL file is known once read.
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .ctx("reading the schema version")?;
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .ctx("reading the journal mode")?;
        if version != schema::SCHEMA_VERSION || !mode.eq_ignore_ascii_case("wal") {
            // A new or older file: made ready by one process at a time.
            let taken = flock::lock(&queue, &queue_path, Some(lock_timeout))?;
            let _queued = Queued { file: &queue, taken: Some(taken) };
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(open_err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                tracing::warn!(mode, "state database could not switch to WAL journaling");
            }
            schema::migrate(&mut conn, &path)?;
        }
        // A command is one short process, and the last connection to close
        // checkpointed the WAL into the database (two fsyncs) and deleted it,
        // which the next command created again (a directory fsync): 15-25 ms
        // of a 30 ms attach on a disk. The WAL stays, checkpointed by the
        // commit that takes it past 100 pages (about every tenth attach): the
        // first connection of each process reads every frame of it to rebuild
        // its index, which SQLite's default of 1000 pages would make cost 1-3 ms.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).map_err(open_err)?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;")
            .map_err(open_err)?;
        // That checkpoint empties the WAL (TRUNCATE), where SQLite's own
        // (PASSIVE) leaves its frames for the next writer of the same
        // connection to write over: the next process, rebuilding the index,
        // counts them as not checkpointed, and its commit copies them all
        // into the database again (three fsyncs), as does every one-write
        // process after it (a CNI ADD or DEL) until one writes twice. Emptied,
        // the WAL holds only what was written since. A failed checkpoint (a
        // reader in the way past the lock timeout) is left to the next commit:
        // this one is done.
        conn.wal_hook(Some(|wal: &mut Wal, pages: c_int| {
            if pages >= WAL_CHECKPOINT_PAGES {
                let _ = wal.checkpoint_v2(CheckpointMode::TRUNCATE);
            }
            Ok(())
        }))
        .map_err(open_err)?;
        narrow_modes(&path);
        Ok(Store { conn, path, queue, queue_path, lock_timeout })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for other writers at most this long (`NICSLICE_LOCK_TIMEOUT`
    /// when opened).
    pub fn set_lock_timeout(&mut self, timeout: Duration) -> Result<(), StoreError> {
        self.lock_timeout = timeout;
        self.conn.busy_timeout(timeout).ctx("setting the lock timeout")
    }

    /// Starts a write transaction, after the writers queued before it (at
    /// most the lock timeout). It rolls back when dropped unless
    /// `WriteTx::commit` is called.
    pub fn write(&mut self) -> Result<WriteTx<'_>, StoreError> {
        let taken = flock::lock(&self.queue, &self.queue_path, Some(self.lock_timeout))?;
        let queued = Queued { file: &self.queue, taken: Some(taken) };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a write transaction")?;
        Ok(WriteTx { tx, _queued: queued })
    }

    /// Starts a read transaction: a consistent snapshot for several reads.
    pub fn read(&mut self) -> Result<ReadTx<'_>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .ctx("starting a read transaction")?;
        Ok(ReadTx { tx })
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }
}

/// The checks and creation of `files` for the database and its side files,
/// before SQLite touches the path. An absent database is made here (0600),
/// so that SQLite opens a file nicslice made.
fn prepare_files(path: &Path) -> Result<(), StoreError> {
    match files::check_file(path)? {
        Some(meta) if meta.len() == 0 => files::check_empty_is_ours(path, &meta)?,
        Some(_) if !is_sqlite(path) => {
            return Err(StoreError::NotAStateDb { path: path.to_owned() });
        }
        Some(_) => {}
        None => {
            files::prepare_dir(path.parent().unwrap_or(Path::new("")))?;
            match files::create_new(path) {
                Ok(_) => {}
                // Made meanwhile by another process: checked as any existing one.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return prepare_files(path);
                }
                Err(source) => {
                    return Err(StoreError::CreateFile { path: path.to_owned(), source });
                }
            }
        }
    }
    for suffix in SIDE_FILES {
        files::check_file(&with_suffix(path, suffix))?;
    }
    Ok(())
}

/// Whether `path` starts with SQLite's header.
fn is_sqlite(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    File::open(path).and_then(|mut f| f.read_exact(&mut header)).is_ok()
        && &header == b"SQLite format 3\0"
}

/// Narrows the database and its side files to 0600 when others may read
/// them (earlier versions made them 0644). Best effort: a failure leaves
/// the mode as it was, which `prepare_files` accepted.
fn narrow_modes(path: &Path) {
    for file in std::iter::once(path.to_owned()).chain(SIDE_FILES.map(|s| with_suffix(path, s))) {
        let narrow = std::fs::symlink_metadata(&file)
            .is_ok_and(|meta| meta.is_file() && meta.mode() & 0o077 != 0);
        if narrow {
            let _ =
                std::fs::set_permissions(&file, std::fs::Permissions::from_mode(files::FILE_MODE));
        }
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
