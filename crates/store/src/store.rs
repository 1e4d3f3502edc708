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

use rusqlite::config::DbConfig;
use rusqlite::wal::CheckpointMode;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::Context;
use crate::files::{self, with_suffix};
use crate::flock::{self, Taken};
use crate::{StoreError, WriteTx, schema};

/// Where the state lives unless `--state` or `NICSLICE_STATE` says otherwise.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/nicslice/state.db";

/// The length of WAL (in frames, pages written) at which a write first
/// copies it into the database (`Store::checkpoint_if_long`).
const CHECKPOINT_FRAMES: i32 = 100;

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
    /// Deletes the state database at `path` and every file the store keeps
    /// beside it (WAL, shared memory, journal, the writers' queue, the
    /// host's DHCPv6 DUID), for tests and benchmarks that made their own.
    /// Missing files are fine.
    pub fn remove_files(path: &Path) {
        let side = SIDE_FILES.map(|s| with_suffix(path, s));
        let own = [with_suffix(path, "-lock"), crate::host_duid_path(path)];
        for file in std::iter::once(path.to_owned()).chain(side).chain(own) {
            let _ = std::fs::remove_file(file);
        }
    }

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
        // of a 30 ms attach on a disk. The WAL stays, and a write checkpoints
        // it first when it is long (`checkpoint_if_long`), not SQLite's
        // automatic checkpoint after a commit (off here): see there.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true).map_err(open_err)?;
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_FKEY, true).map_err(open_err)?;
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")
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
        self.checkpoint_if_long();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a write transaction")?;
        Ok(WriteTx { tx, _queued: queued })
    }

    /// Copies the WAL into the database when it holds `CHECKPOINT_FRAMES`
    /// or more, before a write, so that this write starts the WAL over.
    ///
    /// Every process's first read rebuilds the WAL's index from the whole
    /// file (the `-shm` index does not outlive the last connection), about
    /// 2.5 µs a frame, and a checkpoint costs three fsyncs: the WAL's, the
    /// directory's (the first sync of the WAL in a process) and the
    /// database's; the write that starts the WAL over syncs its new header,
    /// a fourth. SQLite's automatic checkpoint comes after the commit that
    /// passes the limit, and when that was the process's last, the next
    /// process found the WAL whole again (its rebuilt index counts nothing
    /// as copied), copied it all a second time and started it over: seven
    /// fsyncs in two commands. Here the four fall into one. Best effort: a
    /// checkpoint that cannot run now (another process is at it, a reader
    /// holds old frames) leaves the WAL for a later write.
    fn checkpoint_if_long(&self) {
        let frames = self.conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::NOOP);
        if frames.is_ok_and(|(log, done)| log >= CHECKPOINT_FRAMES && done < log)
            && let Err(e) = self.conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE)
        {
            tracing::debug!("state database checkpoint deferred: {e}");
        }
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
