//! Turning any path a user may give into the checkpoint files it means.
//!
//! Accepted forms: a V2 prefix (`dir/model.ckpt`), its `.index` file or one
//! of its `.data-SSSSS-of-NNNNN` files; a folder with a `checkpoint` text
//! file (or that `checkpoint` file itself); a folder whose bundle files have
//! an empty basename (`.index`); a folder holding exactly one `*.index`; a V1
//! file, sharded (`NAME-SSSSS-of-NNNNN`, or `NAME` when only shards exist)
//! or not.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What a path resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// A V2 bundle with this prefix.
    V2 {
        /// `PREFIX` of `PREFIX.index`.
        prefix: PathBuf,
    },
    /// A V1 checkpoint.
    V1 {
        /// The file, or for sharded files `NAME` without the shard suffix.
        name: PathBuf,
        /// The files, in shard order.
        files: Vec<PathBuf>,
    },
}

/// `path` with `suffix` appended to its last component (`a/b` + `.index`
/// → `a/b.index`; `a/` + `.index` → `a/.index`).
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Resolves `path`; see the module documentation for the forms. The second
/// value is a note for the user when the files read are not the ones a
/// `checkpoint` file named (it pointed elsewhere, e.g. at the writer's
/// machine).
pub(crate) fn resolve(path: &Path) -> Result<(Resolved, Option<String>)> {
    if path.is_dir() {
        return resolve_dir(path);
    }
    // The `checkpoint` text file itself stands for its folder.
    if path.file_name().is_some_and(|n| n == "checkpoint") && path.is_file() {
        if let Some(dir) = path.parent() {
            return resolve_dir(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            });
        }
    }
    let resolved = resolve_prefix(path)?.ok_or_else(|| Error::PathNotRecognized {
        path: path.to_path_buf(),
        why: "no such file, no PREFIX.index, and no V1 shards NAME-00000-of-NNNNN".into(),
    })?;
    Ok((resolved, None))
}

/// A folder: the checkpoint its `checkpoint` file names when that target is
/// usable here; otherwise the same basename in this folder; otherwise the
/// folder's own bundle files. TF's `latest_checkpoint` gives up as soon as
/// the named target is missing (checkpoints shipped inside packages keep the
/// writer's absolute paths, sometimes a bare folder ending in `/`); the files
/// sitting next to the `checkpoint` file are what the user means.
fn resolve_dir(dir: &Path) -> Result<(Resolved, Option<String>)> {
    let ckpt = dir.join("checkpoint");
    if !ckpt.is_file() {
        return own_files(dir).map(|r| (r, None));
    }
    let target = match read_checkpoint_file(&ckpt) {
        Ok(t) => t,
        Err(e) => {
            let r = own_files(dir).map_err(|_| e)?;
            let note = format!(
                "{}: no usable model_checkpoint_path line; read {} in this folder instead",
                ckpt.display(),
                describe(&r)
            );
            return Ok((r, Some(note)));
        }
    };
    let named = Path::new(&target);
    let as_named = if named.is_absolute() {
        named.to_path_buf()
    } else {
        dir.join(named)
    };
    if let Some(r) = usable_target(&as_named)? {
        return Ok((r, None));
    }
    // The same basename in this folder (an empty basename, as in a target
    // ending in `/`, means files named `.index`, `.data-…`).
    let base = if target.ends_with(['/', '\\']) {
        ""
    } else {
        target.rsplit(['/', '\\']).next().unwrap_or(&target)
    };
    let beside = dir.join(base);
    let found = match usable_target(&beside)? {
        Some(r) => Some(r),
        None => own_files(dir).ok(),
    };
    match found {
        Some(r) => {
            let note = format!(
                "{} names {target:?}, which is not a checkpoint here (written on another \
                 machine?); read {} in this folder instead",
                ckpt.display(),
                describe(&r)
            );
            Ok((r, Some(note)))
        }
        None => Err(Error::PathNotRecognized {
            path: ckpt,
            why: format!(
                "it names {target:?}, which is not a checkpoint, and the folder holds no \
                 {base:?} checkpoint and no single .index file of its own"
            ),
        }),
    }
}

/// The files a resolution reads, for notes.
fn describe(r: &Resolved) -> String {
    match r {
        Resolved::V2 { prefix } => with_suffix(prefix, ".index").display().to_string(),
        Resolved::V1 { name, .. } => name.display().to_string(),
    }
}

/// A target named by a `checkpoint` file, if it is a checkpoint: a V2
/// prefix with a regular `.index` file, V1 shards, or a single regular file
/// whose last bytes are the table magic. Anything else the file names (a
/// folder, a device, an unrelated file of the writer's or of this machine) is
/// not read at all, so no byte of it can reach a message.
fn usable_target(p: &Path) -> Result<Option<Resolved>> {
    match resolve_prefix(p) {
        Ok(Some(Resolved::V1 { name, files })) => {
            if files.len() == 1 && !ends_with_table_magic(&files[0]) {
                return Ok(None);
            }
            Ok(Some(Resolved::V1 { name, files }))
        }
        Ok(other) => Ok(other),
        // A V1 shard set named but incomplete, or unreadable: not usable.
        Err(_) => Ok(None),
    }
}

/// True when `path` is a regular file whose last eight bytes are the SSTable
/// footer magic.
fn ends_with_table_magic(path: &Path) -> bool {
    use std::io::{Seek, SeekFrom};
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() < super::table::FOOTER_LEN as u64 {
        return false;
    }
    let Ok(mut f) = fs::File::open(path) else {
        return false;
    };
    let mut tail = [0u8; 8];
    if f.seek(SeekFrom::End(-8)).is_err() || f.read_exact(&mut tail).is_err() {
        return false;
    }
    u64::from_le_bytes(tail) == super::table::MAGIC
}

/// A folder's own bundle: files with an empty basename (`.index`), or the
/// one `*.index` it holds.
fn own_files(dir: &Path) -> Result<Resolved> {
    if dir.join(".index").is_file() {
        return Ok(Resolved::V2 {
            prefix: dir.join(""),
        });
    }
    let mut indexes = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        if let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".index")) {
            if entry.path().is_file() {
                indexes.push(dir.join(stem));
            }
        }
    }
    indexes.sort();
    match indexes.len() {
        1 => Ok(Resolved::V2 {
            prefix: indexes.remove(0),
        }),
        0 => Err(Error::PathNotRecognized {
            path: dir.to_path_buf(),
            why: "the folder has no `checkpoint` file and no .index file".into(),
        }),
        n => Err(Error::PathNotRecognized {
            path: dir.to_path_buf(),
            why: format!(
                "the folder has no usable `checkpoint` file and {n} .index files; name one"
            ),
        }),
    }
}

/// Resolves a prefix or file path; `None` when nothing exists there.
fn resolve_prefix(p: &Path) -> Result<Option<Resolved>> {
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if p.is_file() {
        if let Some(stem) = name.strip_suffix(".index") {
            return Ok(Some(Resolved::V2 {
                prefix: p.with_file_name(stem),
            }));
        }
        if let Some(prefix) = shard_suffix(name).and_then(|(stem, _)| stem.strip_suffix(".data")) {
            return Ok(Some(Resolved::V2 {
                prefix: p.with_file_name(prefix),
            }));
        }
    }
    if with_suffix(p, ".index").is_file() {
        return Ok(Some(Resolved::V2 {
            prefix: p.to_path_buf(),
        }));
    }
    if p.is_file() {
        if let Some((stem, count)) = shard_suffix(name) {
            return Ok(Some(v1_shards(p.with_file_name(stem), count)?));
        }
        // Anything else that exists is read as a V1 table; a file that is
        // not one fails there with a typed table error.
        return Ok(Some(Resolved::V1 {
            name: p.to_path_buf(),
            files: vec![p.to_path_buf()],
        }));
    }
    // `NAME` given for sharded V1 files `NAME-00000-of-NNNNN`.
    let parent = match p.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let first = format!("{name}-00000-of-");
    if name.is_empty() || !parent.is_dir() {
        return Ok(None);
    }
    let entries = fs::read_dir(&parent).map_err(|e| Error::io(&parent, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(&parent, e))?;
        let file = entry.file_name();
        let Some(file) = file.to_str() else { continue };
        if file.starts_with(&first) {
            if let Some((_, count)) = shard_suffix(file) {
                return Ok(Some(v1_shards(p.to_path_buf(), count)?));
            }
        }
    }
    Ok(None)
}

/// For a name ending in `-SSSSS-of-NNNNN` (5 or more digits each): the
/// part before it and N.
fn shard_suffix(name: &str) -> Option<(&str, u32)> {
    let (rest, count) = name.rsplit_once("-of-")?;
    let (stem, shard) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() >= 5 && s.bytes().all(|b| b.is_ascii_digit());
    if stem.is_empty() || !digits(shard) || !digits(count) {
        return None;
    }
    Some((stem, count.parse().ok()?))
}

fn v1_shards(stem: PathBuf, count: u32) -> Result<Resolved> {
    if count == 0 {
        return Err(Error::PathNotRecognized {
            path: stem,
            why: "V1 shard count is 0".into(),
        });
    }
    let mut files = Vec::new();
    for i in 0..count {
        let f = with_suffix(&stem, &format!("-{i:05}-of-{count:05}"));
        if !f.is_file() {
            return Err(Error::ShardMissing {
                path: f,
                num_shards: count as i32,
            });
        }
        files.push(f);
    }
    Ok(Resolved::V1 { name: stem, files })
}

/// The `model_checkpoint_path` of a `checkpoint` text file (a
/// `CheckpointState` text proto; the value is C-escaped).
fn read_checkpoint_file(path: &Path) -> Result<String> {
    const LIMIT: u64 = 1 << 20;
    let file = crate::fsx::open_regular(path)?;
    let mut text = Vec::new();
    file.take(LIMIT)
        .read_to_end(&mut text)
        .map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8_lossy(&text);
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix("model_checkpoint_path:") else {
            continue;
        };
        if let Some(v) = unescape_quoted(rest.trim()) {
            return Ok(v);
        }
    }
    Err(Error::PathNotRecognized {
        path: path.to_path_buf(),
        why: "no model_checkpoint_path: \"…\" line".into(),
    })
}

/// Parses a text-proto string literal (`"…"` or `'…'`, C escapes).
fn unescape_quoted(s: &str) -> Option<String> {
    let mut chars = s.bytes();
    let quote = chars.next().filter(|&q| q == b'"' || q == b'\'')?;
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b == quote {
            return Some(String::from_utf8_lossy(&out).into_owned());
        }
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let e = *bytes.get(i)?;
        i += 1;
        match e {
            b'n' => out.push(b'\n'),
            b't' => out.push(b'\t'),
            b'r' => out.push(b'\r'),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match bytes.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push(v as u8);
            }
            b'x' => {
                let mut v = 0u32;
                let mut n = 0;
                while let Some(d) = bytes.get(i).and_then(|&d| (d as char).to_digit(16)) {
                    v = v * 16 + d;
                    i += 1;
                    n += 1;
                    if n == 2 {
                        break;
                    }
                }
                out.push(v as u8);
            }
            other => out.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        assert_eq!(
            with_suffix(Path::new("a/b"), ".index"),
            PathBuf::from("a/b.index")
        );
        assert_eq!(
            with_suffix(&Path::new("a").join(""), ".index"),
            PathBuf::from("a/.index")
        );
        assert_eq!(shard_suffix("m.data-00000-of-00002"), Some(("m.data", 2)));
        assert_eq!(shard_suffix("legacy-00001-of-00002"), Some(("legacy", 2)));
        assert_eq!(shard_suffix("ckpt-1"), None);
        assert_eq!(shard_suffix("x-1-of-2"), None);
    }

    #[test]
    fn checkpoint_strings() {
        assert_eq!(unescape_quoted(r#""ckpt-1""#).as_deref(), Some("ckpt-1"));
        assert_eq!(
            unescape_quoted(r#""a\"b\\c\101\x41""#).as_deref(),
            Some("a\"b\\cAA")
        );
        assert_eq!(unescape_quoted(r#""open"#), None);
        assert_eq!(unescape_quoted("bare"), None);
    }
}
