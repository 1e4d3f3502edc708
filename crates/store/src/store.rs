//! `Store`: opening the database (directories, pragmas, migrations) and
//! starting transactions. Queries live in `read` and `write`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, Transaction, TransactionBehavior};

use crate::error::Context;
use crate::{StoreError, WriteTx, schema};

/// Where the state lives unless `--state` or `NICSLICE_STATE` says otherwise.
pub const DEFAULT_STATE_PATH: &str = "/var/lib/nicslice/state.db";

/// How long a process waits for another's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection to the state database.
pub struct Store {
    conn: Connection,
    path: PathBuf,
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
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source })?;
        }
        let open_err = |source| StoreError::Open { path: path.clone(), source };
        let mut conn = Connection::open(&path).map_err(open_err)?;
        configure_when_free(&conn).map_err(open_err)?;
        schema::migrate(&mut conn, &path)?;
        Ok(Store { conn, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts a write transaction, waiting (up to 5 s) for other writers.
    /// It rolls back when dropped unless `WriteTx::commit` is called.
    pub fn write(&mut self) -> Result<WriteTx<'_>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("starting a write transaction")?;
        Ok(WriteTx { tx })
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

/// `configure`, retried while another process is making the same new file.
/// Switching a new database to WAL can answer SQLITE_BUSY at once, without
/// the busy handler, while a concurrent first opener holds the lock to do
/// the same; seen with eight processes opening one new file together.
fn configure_when_free(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match configure(conn) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    // First, so that the pragmas below wait for a concurrent opener too.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(mode, "state database could not switch to WAL journaling");
    }
    // A command is one short process, and the last connection to close
    // checkpointed the WAL into the database (two fsyncs) and deleted it,
    // which the next command created again (a directory fsync): 15-25 ms of
    // a 30 ms attach on a disk. The WAL stays, checkpointed by the commit
    // that takes it past 100 pages (about every tenth attach): the first
    // connection of each process reads every frame of it to rebuild its
    // index, which SQLite's default of 1000 pages would make cost 1-3 ms.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 100;",
    )
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}
