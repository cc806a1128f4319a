//! Finding the TensorFlow library of an installed `tensorflow` Python
//! package, and the folder of links the `tensorflow` crate's run-time loader
//! needs.
//!
//! The pip wheel ships TF's C API in `tensorflow/libtensorflow_cc.so.2`, next
//! to `libtensorflow_framework.so.2`. The crate's loader looks for a file
//! named `libtensorflow.so` in `$TENSORFLOW_DIR`, and the dynamic loader then
//! resolves `libtensorflow_framework.so.2` next to that *link*, not next to
//! its target. So tfbn makes a folder holding both links (in a cache folder,
//! race-free) and points `TENSORFLOW_DIR` at it (`docs/reliability.md#finding-tensorflow`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The wheel's file that holds TF's C API.
pub const CC_LIB: &str = "libtensorflow_cc.so.2";
/// The wheel's framework library, which `CC_LIB` depends on.
pub const FRAMEWORK_LIB: &str = "libtensorflow_framework.so.2";
/// The file name the `tensorflow` crate's loader looks for.
pub const LOADER_NAME: &str = "libtensorflow.so";

/// One place tfbn looked for TensorFlow, in search order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Where the folder came from, for messages (`--tf-lib`, `TFBN_TF_LIB`, …).
    pub origin: String,
    /// The folder (a `tensorflow` package folder), or `None` when the place
    /// gave none (variable unset, no venv, no `python3`).
    pub dir: Option<PathBuf>,
    /// Why the place gave no folder.
    pub why_none: Option<String>,
}

impl Candidate {
    fn found(origin: impl Into<String>, dir: PathBuf) -> Candidate {
        Candidate {
            origin: origin.into(),
            dir: Some(dir),
            why_none: None,
        }
    }

    fn none(origin: impl Into<String>, why: impl Into<String>) -> Candidate {
        Candidate {
            origin: origin.into(),
            dir: None,
            why_none: Some(why.into()),
        }
    }
}

/// The places tfbn looks, in order: `tf_lib` (the `--tf-lib` flag; when
/// given, the only place), the
/// `TFBN_TF_LIB` variable, the project venv `.venv` under the current
/// folder and then under the crate's build-time `CARGO_MANIFEST_DIR` (what
/// `scripts/setup-tensorflow.sh` makes), the `tensorflow` package of the
/// `python3` on `PATH` (found with `importlib.util.find_spec`, without
/// importing TF), and last a `TENSORFLOW_DIR` that already holds
/// `libtensorflow.so` (the crate's own convention).
///
/// With `TFBN_TF_EXPLICIT_ONLY=1` only `--tf-lib` and `TFBN_TF_LIB` are
/// tried (to pin one TensorFlow, and to test the error path).
pub fn candidates(tf_lib: Option<&Path>) -> Vec<Candidate> {
    let mut out = Vec::new();
    // An explicit folder is the only place tried: the user asked for it.
    if let Some(p) = tf_lib {
        out.push(Candidate::found("the given folder", p.to_path_buf()));
        return out;
    }
    out.push(Candidate::none("a given folder", "none given"));
    match std::env::var_os("TFBN_TF_LIB") {
        Some(v) if !v.is_empty() => out.push(Candidate::found("TFBN_TF_LIB", PathBuf::from(v))),
        _ => out.push(Candidate::none("TFBN_TF_LIB", "not set")),
    }
    if std::env::var_os("TFBN_TF_EXPLICIT_ONLY").is_some_and(|v| v == "1") {
        out.push(Candidate::none(
            "other places",
            "not searched (TFBN_TF_EXPLICIT_ONLY=1)",
        ));
        return out;
    }
    let mut roots: Vec<(String, PathBuf)> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(("./.venv".into(), cwd));
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if !roots.iter().any(|(_, r)| same_dir(r, &manifest)) {
        roots.push((format!("{}/.venv", manifest.display()), manifest));
    }
    for (origin, root) in roots {
        let venv = root.join(".venv");
        match venv_tensorflow(&venv) {
            Ok(dir) => out.push(Candidate::found(origin, dir)),
            Err(why) => out.push(Candidate::none(origin, why)),
        }
    }
    match python_tensorflow("python3") {
        Ok(dir) => out.push(Candidate::found("python3 on PATH", dir)),
        Err(why) => out.push(Candidate::none("python3 on PATH", why)),
    }
    match std::env::var_os("TENSORFLOW_DIR") {
        Some(v) if !v.is_empty() => out.push(Candidate::found("TENSORFLOW_DIR", PathBuf::from(v))),
        _ => out.push(Candidate::none("TENSORFLOW_DIR", "not set")),
    }
    out
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// `VENV/lib/python3.*/site-packages/tensorflow` (or `lib64`).
fn venv_tensorflow(venv: &Path) -> Result<PathBuf, String> {
    if !venv.is_dir() {
        return Err(format!("no {}", venv.display()));
    }
    for lib in ["lib", "lib64"] {
        let Ok(rd) = std::fs::read_dir(venv.join(lib)) else {
            continue;
        };
        let mut pythons: Vec<PathBuf> = rd
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("python3"))
            })
            .collect();
        pythons.sort();
        for py in pythons.iter().rev() {
            let pkg = py.join("site-packages").join("tensorflow");
            if pkg.is_dir() {
                return Ok(pkg);
            }
        }
    }
    Err(format!(
        "{} has no site-packages/tensorflow",
        venv.display()
    ))
}

/// Asks `python` where its `tensorflow` package is, without importing it.
fn python_tensorflow(python: &str) -> Result<PathBuf, String> {
    const SCRIPT: &str = "import importlib.util as u\n\
s = u.find_spec('tensorflow')\n\
print(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')\n";
    let out = Command::new(python)
        .args(["-c", SCRIPT])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").trim().to_string();
        return Err(format!("{python} failed ({}): {last}", out.status));
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        return Err(format!("{python} has no tensorflow package"));
    }
    Ok(PathBuf::from(dir))
}

/// What a candidate folder holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// A `tensorflow` package folder: `libtensorflow_cc.so.2` and
    /// `libtensorflow_framework.so.2` (needs a links folder).
    Wheel {
        /// The C-API library.
        cc: PathBuf,
        /// The framework library.
        framework: PathBuf,
    },
    /// A folder that already holds `libtensorflow.so` (usable as
    /// `TENSORFLOW_DIR` as is).
    LoaderReady,
}

/// Checks what `dir` holds; `Err` says why it is of no use.
pub fn inspect_dir(dir: &Path) -> Result<Layout, String> {
    if !dir.is_dir() {
        return Err("not a folder".into());
    }
    let cc = dir.join(CC_LIB);
    let framework = dir.join(FRAMEWORK_LIB);
    if cc.is_file() && framework.is_file() {
        return Ok(Layout::Wheel { cc, framework });
    }
    if dir.join(LOADER_NAME).is_file() {
        return Ok(Layout::LoaderReady);
    }
    let missing: Vec<&str> = [(CC_LIB, cc.is_file()), (FRAMEWORK_LIB, framework.is_file())]
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    Err(format!(
        "no {} (expected an installed `tensorflow` package folder)",
        missing.join(" and no ")
    ))
}

/// 64-bit FNV-1a: a stable cache key (std's hasher may change between
/// releases).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The folders a links folder may live in, best first:
/// `$XDG_CACHE_HOME/tfbn`, `~/.cache/tfbn`, then the temp folder.
fn cache_roots() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        out.push(PathBuf::from(x).join("tfbn"));
    }
    if let Some(h) = std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        out.push(PathBuf::from(h).join(".cache").join("tfbn"));
    }
    out.push(std::env::temp_dir().join("tfbn-cache"));
    out
}

fn links_ok(dir: &Path, cc: &Path, framework: &Path) -> bool {
    std::fs::read_link(dir.join(LOADER_NAME)).is_ok_and(|t| t == cc)
        && std::fs::read_link(dir.join(FRAMEWORK_LIB)).is_ok_and(|t| t == framework)
}

/// Makes (or finds) a folder holding `libtensorflow.so → cc` and
/// `libtensorflow_framework.so.2 → framework`, named after a hash of the two
/// targets. Race-free: the links are made in a private temporary folder that
/// is then renamed into place; a process that loses the race uses the
/// winner's folder once it checks that the links are right.
pub fn links_dir(cc: &Path, framework: &Path) -> Result<PathBuf, String> {
    let cc = cc
        .canonicalize()
        .map_err(|e| format!("{}: {e}", cc.display()))?;
    let framework = framework
        .canonicalize()
        .map_err(|e| format!("{}: {e}", framework.display()))?;
    let mut key = cc.as_os_str().as_encoded_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(framework.as_os_str().as_encoded_bytes());
    let name = format!("tf-{:016x}", fnv1a(&key));
    let mut errors = Vec::new();
    for root in cache_roots() {
        match make_links_in(&root, &name, &cc, &framework) {
            Ok(dir) => return Ok(dir),
            Err(e) => errors.push(format!("{}: {e}", root.display())),
        }
    }
    Err(format!(
        "cannot create a folder of links ({})",
        errors.join("; ")
    ))
}

fn make_links_in(root: &Path, name: &str, cc: &Path, framework: &Path) -> std::io::Result<PathBuf> {
    let dir = root.join(name);
    if links_ok(&dir, cc, framework) {
        return Ok(dir);
    }
    std::fs::create_dir_all(root)?;
    let tmp = root.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir(&tmp)?;
    let result = (|| {
        std::os::unix::fs::symlink(cc, tmp.join(LOADER_NAME))?;
        std::os::unix::fs::symlink(framework, tmp.join(FRAMEWORK_LIB))?;
        std::fs::rename(&tmp, &dir)
    })();
    match result {
        Ok(()) => Ok(dir),
        Err(e) => {
            let _ = std::fs::remove_file(tmp.join(LOADER_NAME));
            let _ = std::fs::remove_file(tmp.join(FRAMEWORK_LIB));
            let _ = std::fs::remove_dir(&tmp);
            // Another process won the race (rename onto a non-empty folder
            // fails): use its folder if its links are right.
            if links_ok(&dir, cc, framework) {
                Ok(dir)
            } else {
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_folder_is_made_once_and_reused() {
        let tmp = tempfile::tempdir().unwrap();
        let pkg = tmp.path().join("tensorflow");
        std::fs::create_dir(&pkg).unwrap();
        std::fs::write(pkg.join(CC_LIB), b"").unwrap();
        std::fs::write(pkg.join(FRAMEWORK_LIB), b"").unwrap();
        let Layout::Wheel { cc, framework } = inspect_dir(&pkg).unwrap() else {
            panic!("not a wheel layout")
        };
        let cc = cc.canonicalize().unwrap();
        let framework = framework.canonicalize().unwrap();
        let root = tmp.path().join("cache");
        let a = make_links_in(&root, "tf-x", &cc, &framework).unwrap();
        let b = make_links_in(&root, "tf-x", &cc, &framework).unwrap();
        assert_eq!(a, b);
        assert!(links_ok(&a, &cc, &framework));
        // Racing processes: both end with the same good folder.
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (root, cc, fw) = (root.clone(), cc.clone(), framework.clone());
                std::thread::spawn(move || make_links_in(&root, "tf-y", &cc, &fw).unwrap())
            })
            .collect();
        for t in threads {
            assert!(links_ok(&t.join().unwrap(), &cc, &framework));
        }
        let leftovers = std::fs::read_dir(&root)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp-")
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn a_folder_without_the_libraries_says_which_are_missing() {
        let tmp = tempfile::tempdir().unwrap();
        let why = inspect_dir(tmp.path()).unwrap_err();
        assert!(why.contains(CC_LIB) && why.contains(FRAMEWORK_LIB), "{why}");
        assert!(inspect_dir(&tmp.path().join("nope")).is_err());
    }
}
