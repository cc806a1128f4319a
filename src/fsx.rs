//! Opening files that come from strangers, and telling files apart.
//!
//! A path may name a FIFO, a device or a socket as easily as a file. Opening
//! a FIFO for reading blocks until a writer appears (forever, for a FIFO
//! nobody writes), and `/dev/zero` never ends, so every data file tfbn reads
//! goes through [`open_regular`]: the type is checked before the open (no
//! device is opened at all), the open itself is non-blocking, and the type
//! is checked again on the open descriptor (the path may have been swapped
//! in between).

use std::fs::{File, FileType};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// What a file type is, in words, for messages (`a FIFO`, `a folder` …).
pub fn kind_of(ft: FileType) -> &'static str {
    if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a folder"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

fn not_regular(path: &Path, ft: FileType) -> Error {
    Error::FileNotRegular {
        path: path.to_path_buf(),
        kind: kind_of(ft),
    }
}

/// Opens `path` for reading if (after following symlinks) it is a regular
/// file; anything else is [`Error::FileNotRegular`], without blocking.
pub fn open_regular(path: &Path) -> Result<File> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    // O_NONBLOCK: should the path have become a FIFO since the stat, the
    // open returns at once instead of waiting for a writer. O_NOCTTY: a
    // terminal swapped in never becomes the controlling one.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(not_regular(path, meta.file_type()));
    }
    // O_NONBLOCK means nothing for regular files, but take it off so the
    // descriptor behaves as an ordinary one wherever it is passed on.
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this function owns.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Ok(file)
}

/// Reads a whole regular file of at most `limit` bytes; a longer file is
/// [`Error::FileTooLarge`] before anything is read.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let file = open_regular(path)?;
    let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > limit {
        return Err(Error::FileTooLarge {
            path: path.to_path_buf(),
            len,
            limit,
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // One byte more than the length: a file that grows while it is read is
    // noticed instead of read without end.
    file.take(limit.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(path, e))?;
    if bytes.len() as u64 > limit {
        return Err(Error::FileTooLarge {
            path: path.to_path_buf(),
            len: bytes.len() as u64,
            limit,
        });
    }
    Ok(bytes)
}

/// A file's identity: device and inode, after following symlinks. Two
/// paths with the same id are the same file (hard links included).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
}

/// The identity of the file at `path`, or `None` if nothing is there.
pub fn file_id(path: &Path) -> Option<FileId> {
    std::fs::metadata(path).ok().map(|m| FileId {
        dev: m.dev(),
        ino: m.ino(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        match open_regular(&fifo) {
            Err(Error::FileNotRegular { kind, .. }) => assert_eq!(kind, "a FIFO"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            read_regular(Path::new("/dev/zero"), 10),
            Err(Error::FileNotRegular {
                kind: "a character device",
                ..
            })
        ));
        assert!(matches!(
            open_regular(dir.path()),
            Err(Error::FileNotRegular {
                kind: "a folder",
                ..
            })
        ));
    }

    #[test]
    fn read_regular_refuses_files_over_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_regular(&f, 5).unwrap(), b"12345");
        assert!(matches!(
            read_regular(&f, 4),
            Err(Error::FileTooLarge { len: 5, .. })
        ));
        let link = dir.path().join("l");
        std::fs::hard_link(&f, &link).unwrap();
        assert_eq!(file_id(&f), file_id(&link));
    }
}
