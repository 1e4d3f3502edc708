//! The files and directories the store keeps its databases in: what it
//! accepts and how it makes them. Shared by the SQLite state and the CNI
//! lease database with its lock file.
//!
//! - Directories are made 0755 and files 0600, whatever the umask (the
//!   mode is set again after creation, which the umask cannot narrow).
//! - A file or directory someone else could change is refused, with the
//!   reason: not owned by the caller (a directory may also be root's),
//!   writable by group or others (a directory with the sticky bit, as /tmp,
//!   is accepted: there nobody else may rename or delete the caller's
//!   files, and the files themselves are checked), a symbolic link not made
//!   by root, anything but a regular file where a file belongs.
//! - A file is initialised only when nicslice made it: one it creates now
//!   (`O_EXCL`), or an empty one left 0600 and owned by the caller, which is
//!   what a nicslice killed between creating and writing it leaves. Any
//!   other empty file is someone else's, and is refused.
//!
//! Nothing here renames, overwrites or deletes a file.

use std::fs::{File, Metadata, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::StoreError;

/// The mode of every directory the store makes.
pub(crate) const DIR_MODE: u32 = 0o755;
/// The mode of every file the store makes.
pub(crate) const FILE_MODE: u32 = 0o600;

fn unsafe_path(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::UnsafePath { path: path.to_owned(), reason: reason.into() }
}

/// The caller's effective uid, which owns what it makes.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// What the file type in a `st_mode` is, for refusals.
fn kind(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFIFO => "a named pipe",
        libc::S_IFSOCK => "a socket",
        _ => "a regular file",
    }
}

/// Follows `path` if it is a symbolic link made by root; refuses any other link.
fn resolve(path: &Path, lstat: Metadata) -> Result<Metadata, StoreError> {
    if !lstat.file_type().is_symlink() {
        return Ok(lstat);
    }
    if lstat.uid() != 0 {
        return Err(unsafe_path(
            path,
            format!(
                "it is a symbolic link owned by uid {}; nicslice follows a link only when root made it",
                lstat.uid()
            ),
        ));
    }
    std::fs::metadata(path).map_err(|source| StoreError::Inspect { path: path.to_owned(), source })
}

/// Checks the file `path` if it exists: a regular file (or a root-made link
/// to one) owned by the caller and writable by nobody else. `None` when absent.
pub(crate) fn check_file(path: &Path) -> Result<Option<Metadata>, StoreError> {
    let lstat = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        // A file where a directory of the path should be: no file here,
        // and `prepare_dir` says what is in the way.
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(None);
        }
        Err(source) => return Err(StoreError::Inspect { path: path.to_owned(), source }),
    };
    let meta = resolve(path, lstat)?;
    check_file_meta(path, &meta)?;
    Ok(Some(meta))
}

/// The checks of [`check_file`] on what `fstat` or `stat` said of `path`.
pub(crate) fn check_file_meta(path: &Path, meta: &Metadata) -> Result<(), StoreError> {
    check_stat(path, meta.mode(), meta.uid())
}

/// [`check_file_meta`] on a `stat`'s mode and owner.
pub(crate) fn check_stat(path: &Path, st_mode: u32, uid: u32) -> Result<(), StoreError> {
    if st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(unsafe_path(path, format!("it is {}, not a regular file", kind(st_mode))));
    }
    let me = euid();
    if uid != me {
        return Err(unsafe_path(path, format!("it is owned by uid {uid}, not by you (uid {me})")));
    }
    let mode = st_mode & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_path(
            path,
            format!(
                "it is writable by group or others (mode {mode:04o}); nicslice keeps its files \
                 {FILE_MODE:04o}: chmod go-w it if it is nicslice's"
            ),
        ));
    }
    Ok(())
}

/// Whether an existing empty file is one nicslice made and never wrote
/// (see the module docs): 0600 and the caller's. `check_file` passed.
pub(crate) fn check_empty_is_ours(path: &Path, meta: &Metadata) -> Result<(), StoreError> {
    let mode = meta.mode() & 0o7777;
    if meta.len() == 0 && mode != FILE_MODE {
        return Err(unsafe_path(
            path,
            format!(
                "it is an empty file of mode {mode:04o} that nicslice did not make (it makes its \
                 files {FILE_MODE:04o}); remove it or choose another path"
            ),
        ));
    }
    Ok(())
}

/// Checks the directory `dir`: a directory (or a root-made link to one),
/// owned by the caller or root, writable by nobody else unless sticky.
fn check_dir(dir: &Path, lstat: Metadata) -> Result<(), StoreError> {
    let meta = resolve(dir, lstat)?;
    if !meta.is_dir() {
        return Err(unsafe_path(dir, format!("it is {}, not a directory", kind(meta.mode()))));
    }
    let me = euid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(unsafe_path(
            dir,
            format!(
                "the directory is owned by uid {}, neither you (uid {me}) nor root",
                meta.uid()
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && mode & libc::S_ISVTX == 0 {
        return Err(unsafe_path(
            dir,
            format!(
                "the directory is writable by group or others (mode {mode:04o}) without the \
                 sticky bit: anyone could replace nicslice's files in it"
            ),
        ));
    }
    Ok(())
}

/// Makes `dir` and its missing parents (0755), or checks the existing one
/// (`check_dir`). An empty path is the current directory.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    match std::fs::symlink_metadata(dir) {
        Ok(lstat) => return check_dir(dir, lstat),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {}
        Err(source) => return Err(StoreError::Inspect { path: dir.to_owned(), source }),
    }
    if let Some(parent) = dir.parent() {
        prepare_dir(parent)?;
    }
    let made = std::fs::DirBuilder::new().mode(DIR_MODE).create(dir);
    match made {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE))
            .map_err(|source| StoreError::CreateDir { path: dir.to_owned(), source }),
        // Made meanwhile by another process: checked like any existing one.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => prepare_dir(dir),
        Err(source) => Err(StoreError::CreateDir { path: dir.to_owned(), source }),
    }
}

/// Creates `path` (0600, not following a link), failing if anything is there.
pub(crate) fn create_new(path: &Path) -> std::io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)?;
    file.set_permissions(std::fs::Permissions::from_mode(FILE_MODE))?;
    Ok(file)
}

/// Opens the existing file `path` to read and write, not following a link.
pub(crate) fn open_existing(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Opens the lock file `path`, making it (0600) when absent; refuses one
/// that is not a regular file of the caller's writable by nobody else.
pub(crate) fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    let err = |source| StoreError::Lock { path: path.to_owned(), source };
    let file = match open_existing(path) {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => match create_new(path) {
            Ok(f) => return Ok(f),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => open_existing(path).map_err(err)?,
            Err(e) => return Err(err(e)),
        },
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_path(path, "it is a symbolic link; a lock file must not be one"));
        }
        Err(e) => return Err(err(e)),
    };
    check_file_meta(path, &file.metadata().map_err(err)?)?;
    Ok(file)
}

/// Moves `path` aside to `<path>.<tag>` (or `.<tag>.1`, `.2`, ... when
/// taken), never replacing anything (`renameat2(RENAME_NOREPLACE)`); the
/// new name.
pub(crate) fn set_aside(path: &Path, tag: &str) -> Result<std::path::PathBuf, StoreError> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes());
    let from =
        c(path).map_err(|e| StoreError::Inspect { path: path.to_owned(), source: e.into() })?;
    let mut last = None;
    for n in 0..1000 {
        let aside = if n == 0 {
            with_suffix(path, &format!(".{tag}"))
        } else {
            with_suffix(path, &format!(".{tag}.{n}"))
        };
        let err =
            |source| StoreError::SetAside { path: path.to_owned(), aside: aside.clone(), source };
        let to = c(&aside).map_err(|e| err(e.into()))?;
        // SAFETY: two NUL-terminated paths that live across the call; the
        // raw system call, which glibc and musl both pass through.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_renameat2,
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            return Ok(aside);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != ErrorKind::AlreadyExists {
            return Err(err(e));
        }
        last = Some(err(e));
    }
    Err(last.unwrap_or_else(|| StoreError::Inspect {
        path: path.to_owned(),
        source: ErrorKind::AlreadyExists.into(),
    }))
}

/// `path` with `suffix` appended to its file name (`state.db` → `state.db-wal`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("files-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn files_of_others_or_writable_by_others_are_refused_with_the_reason() {
        let dir = temp("refuse");
        prepare_dir(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        let e = check_file(&file).unwrap_err().to_string();
        assert!(e.contains("writable by group or others (mode 0666)"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(check_file(&file).unwrap().is_some());
        let e = check_file(Path::new("/dev/null")).unwrap_err().to_string();
        assert!(e.contains("a character device, not a regular file"), "{e}");
        let e = check_file(&dir).unwrap_err().to_string();
        assert!(e.contains("a directory, not a regular file"), "{e}");
        let c = std::ffi::CString::new(file.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: chown of a file this test made, by a NUL-terminated path.
        if unsafe { libc::chown(c.as_ptr(), 4321, 4321) } == 0 {
            let e = check_file(&file).unwrap_err().to_string();
            assert!(e.contains("owned by uid 4321, not by you"), "{e}");
        }
        // A link: followed only when root made it.
        let link = dir.join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let c = std::ffi::CString::new(link.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: lchown of a link this test made.
        if unsafe { libc::lchown(c.as_ptr(), 4321, 4321) } == 0 {
            let e = check_file(&link).unwrap_err().to_string();
            assert!(e.contains("symbolic link owned by uid 4321"), "{e}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_world_writable_directory_is_refused_unless_sticky() {
        let dir = temp("dirmode");
        prepare_dir(&dir).unwrap();
        let mode = |m| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(m)).unwrap();
        mode(0o777);
        let e = prepare_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("writable by group or others (mode 0777) without the sticky"), "{e}");
        mode(0o1777);
        prepare_dir(&dir).unwrap();
        mode(0o755);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_empty_file_is_ours_only_when_0600() {
        let dir = temp("empty");
        prepare_dir(&dir).unwrap();
        let file = dir.join("f");
        drop(create_new(&file).unwrap());
        let meta = check_file(&file).unwrap().unwrap();
        check_empty_is_ours(&file, &meta).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let meta = check_file(&file).unwrap().unwrap();
        let e = check_empty_is_ours(&file, &meta).unwrap_err().to_string();
        assert!(e.contains("empty file of mode 0644 that nicslice did not make"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
