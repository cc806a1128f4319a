//! Putting output files in place: checks that an output path can be
//! written (not an input, not a folder, not taken unless forced), and
//! [`write_atomic`], which writes a sibling temp file and moves it into
//! place atomically, without clobbering, cleaning up on failure or signal.
//! Used by every command that writes (export, apply, snapshot) and by the
//! `.npy` writer, below all of them.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// An error from writing the temp file, before it is mapped to [`Error`].
pub enum WriteError {
    /// I/O failure.
    Io(std::io::Error),
    /// A library error raised while producing the bytes.
    Tfbn(Error),
}

impl From<std::io::Error> for WriteError {
    fn from(e: std::io::Error) -> Self {
        WriteError::Io(e)
    }
}

impl From<Error> for WriteError {
    fn from(e: Error) -> Self {
        WriteError::Tfbn(e)
    }
}

/// How an output file is put in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputPolicy {
    /// Replace an existing file (otherwise an existing file is an error
    /// before anything is written).
    pub force: bool,
    /// `fdatasync` the temp file before renaming it, so that after a crash
    /// the output is either the old file or the whole new one. Without it
    /// the rename still makes a failed write invisible, but a power loss
    /// right after it may leave an empty or partial file on some file
    /// systems; what is gained is the time the disk needs to write the data
    /// (about `cp` speed instead of `cp` + `sync`).
    pub sync: bool,
}

impl Default for OutputPolicy {
    /// No replacing, synced.
    fn default() -> Self {
        OutputPolicy {
            force: false,
            sync: true,
        }
    }
}

/// Checks that `out` can be an output: whatever is there now must be a
/// regular file (a folder, FIFO or device is [`Error::OutputNotAFile`],
/// with or without `force`), and without `force` nothing may be there
/// ([`Error::OutputExists`]).
pub fn check_output(out: &Path, force: bool) -> Result<()> {
    // The folder must exist: tfbn does not create folders (a typo in `-o`
    // should not scatter new directories), and the temp file beside the
    // output would otherwise be the path an error names.
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.is_dir() {
        return Err(Error::OutputFolderMissing {
            path: out.to_path_buf(),
            folder: parent.to_path_buf(),
        });
    }
    match std::fs::metadata(out) {
        Ok(m) if !m.file_type().is_file() => Err(Error::OutputNotAFile {
            path: out.to_path_buf(),
            kind: crate::fsx::kind_of(m.file_type()),
        }),
        Ok(_) if !force => Err(Error::OutputExists {
            path: out.to_path_buf(),
        }),
        // A dangling symlink: `exists` is false, but publishing without
        // force still refuses it (link(2) sees the name taken).
        _ => Ok(()),
    }
}

/// Refuses an output that is the same file (device and inode, after
/// following symlinks; hard links included) as one of `inputs`: writing it
/// would destroy what is being read, `force` or not.
pub fn check_output_not_input(out: &Path, inputs: &[PathBuf]) -> Result<()> {
    let Some(id) = crate::fsx::file_id(out) else {
        return Ok(());
    };
    match inputs.iter().find(|p| crate::fsx::file_id(p) == Some(id)) {
        Some(input) => Err(Error::OutputIsInput {
            path: out.to_path_buf(),
            input: input.clone(),
        }),
        None => Ok(()),
    }
}

/// Runs `body` against a buffered sibling temp file of `out`, then moves
/// the temp file to `out` (after syncing it, unless `policy.sync` is off).
/// On any failure the temp file is removed and `out` is left as it was.
///
/// * Without `policy.force`, an existing `out` is an error before anything
///   is written, and the final move cannot replace a file that appeared in
///   the meantime: it is `renameat2(RENAME_NOREPLACE)` (or, on file systems
///   without it, `link(2)` then `unlink`), so of two writers racing for one
///   name exactly one succeeds and the other gets [`Error::OutputExists`].
///   With `force` it is `rename(2)`.
/// * `out` must not be a folder, FIFO or device ([`check_output`]).
/// * The temp file is registered with `crate::cleanup`, so a SIGINT or
///   SIGTERM (with `crate::cleanup::install_signal_cleanup`) removes it;
///   and temp files that killed processes left in the folder are removed
///   first (`crate::cleanup::sweep_stale_temps`).
pub fn write_atomic<T>(
    out: &Path,
    policy: OutputPolicy,
    body: impl FnOnce(&mut BufWriter<&File>) -> std::result::Result<T, WriteError>,
) -> Result<T> {
    check_output(out, policy.force)?;
    let tmp = temp_sibling(out);
    if let Some(dir) = tmp.parent() {
        crate::cleanup::sweep_stale_temps(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        });
    }
    let _guard = crate::cleanup::register(&tmp);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    let result = (|| {
        let mut w = BufWriter::with_capacity(1 << 20, &file);
        let value = body(&mut w)?;
        w.flush()?;
        drop(w);
        if policy.sync {
            file.sync_data()?;
        }
        debug_stall();
        Ok::<T, WriteError>(value)
    })();
    drop(file);
    match result {
        Ok(value) => match publish(&tmp, out, policy.force) {
            Ok(()) => Ok(value),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        },
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(match e {
                WriteError::Io(e) => Error::io(out, e),
                WriteError::Tfbn(e) => e,
            })
        }
    }
}

/// Fault-injection hook for the signal and race tests: sleeps
/// `TFBN_DEBUG_STALL_MS` milliseconds once the temp file is complete, before
/// it is moved into place, so that a test can interrupt or race a write at a
/// known point. In every build, so the tests run under any profile; one
/// environment lookup per written file.
fn debug_stall() {
    if let Some(ms) = std::env::var("TFBN_DEBUG_STALL_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Moves the finished `tmp` to `out`: `rename(2)` with `force`, otherwise
/// an atomic no-clobber move.
fn publish(tmp: &Path, out: &Path, force: bool) -> Result<()> {
    if force {
        return std::fs::rename(tmp, out).map_err(|e| Error::io(out, e));
    }
    let exists = |e: &std::io::Error| e.kind() == std::io::ErrorKind::AlreadyExists;
    match rename_noreplace(tmp, out) {
        Ok(()) => return Ok(()),
        Err(e) if exists(&e) => {
            return Err(Error::OutputExists {
                path: out.to_path_buf(),
            })
        }
        // EINVAL / ENOSYS: the file system (or kernel) lacks RENAME_NOREPLACE.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOSYS)) => {}
        Err(e) => return Err(Error::io(out, e)),
    }
    match std::fs::hard_link(tmp, out) {
        Ok(()) => {
            let _ = std::fs::remove_file(tmp);
            Ok(())
        }
        Err(e) if exists(&e) => Err(Error::OutputExists {
            path: out.to_path_buf(),
        }),
        Err(e) => Err(Error::io(out, e)),
    }
}

#[cfg(target_os = "linux")]
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two valid C strings, relative to the current folder.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn rename_noreplace(_from: &Path, _to: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
}

fn temp_sibling(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty());
    // The process id and a counter: two writers in one process (threads)
    // never share a temp file.
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp_name = crate::cleanup::temp_name(&name, std::process::id(), n);
    match dir {
        Some(d) => d.join(tmp_name),
        None => PathBuf::from(tmp_name),
    }
}
