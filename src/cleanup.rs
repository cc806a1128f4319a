//! Temporary files that must not outlive the process: a registry of the
//! temp files being written, the signal handling that removes them on
//! SIGINT, SIGTERM or SIGHUP, and the sweep that removes those a killed
//! process (SIGKILL, a crash, a power cut) left behind.
//!
//! The signal handler only writes the signal number to a pipe (`write` is
//! async-signal-safe); a thread blocked on the other end does the work in
//! ordinary code: it takes the registry's lock, removes every registered
//! file, and ends the process with status 128 + the signal (130, 143, 129).
//! Library code never installs handlers: the binary asks for them with
//! [`install_signal_cleanup`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// The temp files being written, each with the id of its guard.
static TEMPS: Mutex<Vec<(u64, PathBuf)>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(0);
/// The pipe's write end, for the handler (-1 until installed).
static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static INSTALLED: AtomicBool = AtomicBool::new(false);

fn temps() -> MutexGuard<'static, Vec<(u64, PathBuf)>> {
    // A panic while the lock was held leaves the list itself intact.
    TEMPS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Keeps a path in the registry until dropped. Register *before* creating
/// the file, so that no moment exists where the file is there but unknown.
#[derive(Debug)]
pub struct TempGuard {
    id: u64,
}

/// Registers `path` for removal should the process be interrupted.
pub fn register(path: &Path) -> TempGuard {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    temps().push((id, path.to_path_buf()));
    TempGuard { id }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        temps().retain(|(id, _)| *id != self.id);
    }
}

/// Removes every registered file; returns how many were removed.
fn remove_registered() -> usize {
    temps()
        .iter()
        .filter(|(_, p)| std::fs::remove_file(p).is_ok())
        .count()
}

extern "C" fn on_signal(sig: libc::c_int) {
    // Async-signal-safe: an atomic load, errno saved and restored, write(2).
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: errno is thread-local; write(2) on our own pipe.
        unsafe {
            let errno = *libc::__errno_location();
            let byte = sig as u8;
            libc::write(fd, (&byte as *const u8).cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// The signals that end a process and can be caught.
const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Installs handlers for SIGINT, SIGTERM and SIGHUP that remove the
/// registered temp files and end the process with status 128 + signal
/// (130, 143, 129), writing one line to stderr. For binaries; once per
/// process (later calls do nothing).
pub fn install_signal_cleanup() -> std::io::Result<()> {
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 fills the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let [read_fd, write_fd] = fds;
    PIPE_WRITE.store(write_fd, Ordering::SeqCst);
    std::thread::Builder::new()
        .name("tfbn-signals".into())
        .spawn(move || loop {
            let mut byte = 0u8;
            // SAFETY: read(2) into a one-byte buffer on our own pipe.
            let n = unsafe { libc::read(read_fd, (&mut byte as *mut u8).cast(), 1) };
            if n == 1 {
                let sig = byte as libc::c_int;
                let removed = remove_registered();
                let name = match sig {
                    libc::SIGINT => "SIGINT",
                    libc::SIGTERM => "SIGTERM",
                    libc::SIGHUP => "SIGHUP",
                    _ => "a signal",
                };
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("tfbn: interrupted by {name}; removed {removed} temporary file(s)\n")
                        .as_bytes(),
                );
                // _exit: no atexit handlers (TF's may run while TF is busy
                // in another thread); every output is already either
                // complete or removed.
                // SAFETY: ends the process.
                unsafe { libc::_exit(128 + sig) };
            }
            if n == 0 {
                return; // cannot happen: the write end is never closed
            }
        })?;
    for sig in SIGNALS {
        // SAFETY: a zeroed sigaction with our handler; SA_RESTART so that
        // other threads' system calls are not cut short.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(sig, &sa, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(())
}

/// The temp-file name for `name` written by process `pid`, `n`-th of the
/// process: `.NAME.tfbn-tmp-PID-N`.
pub(crate) fn temp_name(name: &str, pid: u32, n: u64) -> String {
    format!(".{name}.tfbn-tmp-{pid}-{n}")
}

/// The process id in a temp-file name of [`temp_name`]'s form.
fn temp_pid(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let (_, tail) = rest.rsplit_once(".tfbn-tmp-")?;
    let (pid, n) = tail.split_once('-')?;
    if pid.is_empty() || n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// True when no process `pid` exists (`kill(pid, 0)` says ESRCH; a process
/// of another user, EPERM, exists).
fn process_gone(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let r = unsafe { libc::kill(pid, 0) };
    r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Removes from `dir` the temp files (`.NAME.tfbn-tmp-PID-N`) of processes that no
/// longer exist: what a SIGKILL or a crash in the middle of a write left.
/// Returns the paths removed. Only regular files are removed; files of
/// live processes (this one included) are left alone. Process ids are
/// those of this machine: a folder shared with another machine (NFS) may
/// hold a live writer's file under an id that is free here.
pub fn sweep_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    let me = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temp_pid) else {
            continue;
        };
        if pid == me || !process_gone(pid) {
            continue;
        }
        let path = entry.path();
        let regular = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        if regular && std::fs::remove_file(&path).is_ok() {
            removed.push(path);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_parse_back() {
        assert_eq!(temp_pid(&temp_name("a.b-1.safetensors", 42, 7)), Some(42));
        assert_eq!(temp_pid(".x.tfbn-tmp-12-"), None);
        assert_eq!(temp_pid("x.tfbn-tmp-12-1"), None);
        assert_eq!(temp_pid(".x.tfbn-tmp--1"), None);
    }

    #[test]
    fn registry_drops_with_its_guard() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t");
        let g = register(&p);
        assert!(temps().iter().any(|(_, q)| q == &p));
        drop(g);
        assert!(!temps().iter().any(|(_, q)| q == &p));
    }

    #[test]
    fn sweep_removes_only_dead_processes_files() {
        let dir = tempfile::tempdir().unwrap();
        // A child that has exited and been reaped: its id is free.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let stale = dir.path().join(temp_name("out.safetensors", dead, 0));
        let mine = dir
            .path()
            .join(temp_name("out.safetensors", std::process::id(), 0));
        let other = dir.path().join("out.safetensors");
        for p in [&stale, &mine, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        let removed = sweep_stale_temps(dir.path());
        // The id may in theory have been reused already; then nothing goes.
        assert!(removed.is_empty() || removed == vec![stale.clone()]);
        assert!(mine.exists() && other.exists());
    }
}
