//! The file system rules every file of a store directory follows: no symbolic link is followed, files are
//! private (mode 0600) and replaced atomically, and the directory is private to its user (mode 0700).

use erpnet_oauth_core::store::StoreError;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Makes the temporary file names of one process's concurrent writes distinct.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Checks that `dir` is a directory that only this process's user can change: refused when it is
/// writable by its group or by others, or owned by a user other than this process's (effective) user
/// or root ([`StoreError::DirectoryWritableByOthers`], [`StoreError::DirectoryOwnedByOther`]), as ssh
/// refuses such a `~/.ssh`. Whoever can change the directory can replace the token file or plant a link
/// in it. A symbolic link to a directory is judged by the directory it points to. On other platforms
/// than Unix only "is a directory" is checked.
pub fn check_directory(dir: &Path) -> Result<(), StoreError> {
    let meta = fs::metadata(dir).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        action: "read",
        source,
    })?;
    if !meta.is_dir() {
        return Err(StoreError::NotADirectory { path: dir.to_path_buf() });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        judge_directory(dir, meta.mode(), meta.uid(), rustix::process::geteuid().as_raw())?;
    }
    Ok(())
}

/// [`check_directory`]'s decision for a directory of permission `mode` owned by `owner`, for a process
/// running as `user`.
#[cfg_attr(not(unix), allow(dead_code))]
fn judge_directory(dir: &Path, mode: u32, owner: u32, user: u32) -> Result<(), StoreError> {
    if owner != user && owner != 0 {
        return Err(StoreError::DirectoryOwnedByOther { path: dir.to_path_buf(), owner, user });
    }
    if mode & 0o022 != 0 {
        return Err(StoreError::DirectoryWritableByOthers { path: dir.to_path_buf(), mode: mode & 0o7777 });
    }
    Ok(())
}

/// Creates `dir` when it is missing, with mode 0700 (Unix), as are the missing directories above it;
/// then [`check_directory`]: an existing directory keeps its mode, and is refused if others can change
/// it.
pub fn create_directory(dir: &Path) -> Result<(), StoreError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|source| StoreError::Io {
        path: dir.to_path_buf(),
        action: "created",
        source,
    })?;
    check_directory(dir)
}

/// Reads the file at `path` without following a symbolic link ([`StoreError::Symlink`] if it is one);
/// `None` when it does not exist.
pub fn read_private_file(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let mut options = OpenOptions::new();
    options.read(true);
    let mut file = match open_no_follow(&mut options, path) {
        Ok(file) => file,
        Err(Opened::Io(e)) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into_store_error(path, "read")),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|source| StoreError::Io {
        path: path.to_path_buf(),
        action: "read",
        source,
    })?;
    Ok(Some(bytes))
}

/// Replaces the file at `path` with `bytes` atomically, mode 0600 (Unix): a temporary file created next
/// to it (never through a link: it must not exist) is written, fsynced and renamed over `path`, then the
/// directory is fsynced. A process killed at any moment leaves the old file or the new one. A symbolic
/// link at `path` is replaced, never written through. Temporary files of `path` that a killed write left
/// behind are removed once they are ten minutes old.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let err = |source| StoreError::Io { path: path.to_path_buf(), action: "written", source };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = dir_of(path);
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    if let Err(e) = write_new(&temp, bytes) {
        let _ = fs::remove_file(&temp);
        return Err(err(e));
    }
    if let Err(e) = fs::rename(&temp, path) {
        let _ = fs::remove_file(&temp);
        return Err(err(e));
    }
    sync_dir(&dir).map_err(err)?;
    remove_stale_temps(&dir, &name);
    Ok(())
}

/// Opens (creating it with mode 0600 if missing) the file at `path` for a lock, without following a
/// symbolic link.
pub(crate) fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    open_no_follow(&mut options, path).map_err(|e| e.into_store_error(path, "locked"))
}

/// The directory a file is in (`.` for a bare name).
pub(crate) fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Makes a rename or a deletion in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why a file could not be opened.
enum Opened {
    /// It is a symbolic link.
    Symlink,
    /// The OS said no.
    Io(io::Error),
}

impl Opened {
    fn into_store_error(self, path: &Path, action: &'static str) -> StoreError {
        match self {
            Opened::Symlink => StoreError::Symlink { path: path.to_path_buf() },
            Opened::Io(source) => StoreError::Io { path: path.to_path_buf(), action, source },
        }
    }
}

/// Opens `path` with `options`, refusing a symbolic link: on Unix the kernel refuses it (`O_NOFOLLOW`,
/// so no link can be swapped in between a check and the open); elsewhere it is checked just before.
fn open_no_follow(options: &mut OpenOptions, path: &Path) -> Result<File, Opened> {
    let is_symlink = || fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    #[cfg(not(unix))]
    if is_symlink() {
        return Err(Opened::Symlink);
    }
    // The error for a link differs between systems (ELOOP on Linux and macOS, EMLINK on FreeBSD, ...):
    // any failure on what is a link is reported as the link.
    options.open(path).map_err(|e| if is_symlink() { Opened::Symlink } else { Opened::Io(e) })
}

/// Writes `bytes` to a new file at `path` (mode 0600 on Unix) and fsyncs it. The file must not exist:
/// `create_new` (`O_CREAT | O_EXCL`) fails on anything there, a symbolic link included.
fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Removes temporary files of the file `name` in `dir` that a process killed in the middle of a write left
/// behind (they may hold tokens). Only files older than any write could take are removed, so a concurrent
/// writer is never disturbed.
fn remove_stale_temps(dir: &Path, name: &str) {
    const STALE: Duration = Duration::from_secs(600);
    let prefix = format!(".{name}.");
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let file_name = file_name.to_string_lossy();
        if !(file_name.starts_with(&prefix) && file_name.ends_with(".tmp")) {
            continue;
        }
        // The entry's own metadata: a link is judged (and removed) as a link, never followed.
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_others_can_change_are_refused() {
        let dir = Path::new("/s");
        assert!(judge_directory(dir, 0o40700, 1000, 1000).is_ok());
        assert!(judge_directory(dir, 0o40755, 1000, 1000).is_ok(), "others may read: tokens are 0600");
        assert!(judge_directory(dir, 0o40700, 0, 1000).is_ok(), "root's directories are trusted, as by ssh");
        for mode in [0o40777, 0o40770, 0o40702, 0o41777] {
            let r = judge_directory(dir, mode, 1000, 1000);
            assert!(
                matches!(&r, Err(StoreError::DirectoryWritableByOthers { path, mode: m })
                    if path == dir && *m == mode & 0o7777),
                "{mode:o}: {r:?}"
            );
        }
        let r = judge_directory(dir, 0o40700, 1001, 1000);
        assert!(matches!(r, Err(StoreError::DirectoryOwnedByOther { owner: 1001, user: 1000, .. })), "{r:?}");
        assert!(
            matches!(judge_directory(dir, 0o40700, 1001, 0), Err(StoreError::DirectoryOwnedByOther { .. })),
            "root using another user's directory is refused too: that user could plant links"
        );
    }

    #[cfg(unix)]
    #[test]
    fn check_directory_judges_the_real_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("store");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_directory(&dir).unwrap_err();
        assert!(matches!(e, StoreError::DirectoryWritableByOthers { mode: 0o777, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!(
                "the store directory {0} is writable by others (mode 0777): chmod 700 {0}",
                dir.display()
            )
        );
        assert!(matches!(create_directory(&dir), Err(StoreError::DirectoryWritableByOthers { .. })));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        check_directory(&dir).unwrap();
        create_directory(&dir).unwrap();
        let file = dir.join("f");
        fs::write(&file, b"").unwrap();
        assert!(matches!(check_directory(&file), Err(StoreError::NotADirectory { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn create_directory_makes_private_directories() {
        use std::os::unix::fs::PermissionsExt as _;
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("config").join("erpnet-oauth");
        create_directory(&dir).unwrap();
        for d in [&dir, &home.path().join("config")] {
            assert_eq!(fs::metadata(d).unwrap().permissions().mode() & 0o777, 0o700, "{}", d.display());
        }
    }

    #[test]
    fn private_files_are_written_atomically_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("profile.json");
        assert_eq!(read_private_file(&path).unwrap(), None);
        write_private_file(&path, b"one").unwrap();
        write_private_file(&path, b"two").unwrap();
        assert_eq!(read_private_file(&path).unwrap().as_deref(), Some(&b"two"[..]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["profile.json"], "no temporary file is left");
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_never_read_or_written_through_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("target");
        fs::write(&target, b"precious").unwrap();
        let path = dir.path().join("profile.json");
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let r = read_private_file(&path);
        assert!(matches!(&r, Err(StoreError::Symlink { path: p }) if *p == path), "{r:?}");
        write_private_file(&path, b"new").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"precious", "the link's target is untouched");
        assert!(!fs::symlink_metadata(&path).unwrap().file_type().is_symlink(), "the link was replaced");
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }
}
