//! The TensorFlow backend: TF itself, loaded at run time through the
//! `tensorflow` crate, to read checkpoints ([`read`]) and to run TF's own
//! batch-norm ops beside the native layer ([`bn`]).
//!
//! Nothing here is needed to build tfbn or to use the native reader and
//! layer: the `tensorflow` crate is built with `tensorflow_runtime_linking`,
//! so `libtensorflow` is only looked for when [`load`] is called.
//!
//! * [`load`] finds an installed `tensorflow` package (see
//!   [`find::candidates`] for the order), makes the folder of links the
//!   crate's loader needs, sets `TF_ENABLE_ONEDNN_OPTS` for the requested
//!   [`Backend`] and loads the library, once per process.
//! * Every TF result should be reported with [`TfRuntime::host`]: the
//!   backend, TF's version, the CPU vendor and the thread count decide the
//!   bits (`docs/bn-arithmetic.md#onednn`, `#rsqrt`).

pub mod bn;
pub mod elf;
pub mod find;
mod graph;
pub mod own_graph;
pub mod read;

use std::path::PathBuf;
use std::sync::OnceLock;

use serde::Serialize;

use crate::error::{Error, Result};

/// Which CPU kernels TF runs batch norm on (docs/bn-arithmetic.md#which-kernel-runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Eigen (`TF_ENABLE_ONEDNN_OPTS=0`): the kernels the native layer
    /// reproduces bit for bit.
    Eigen,
    /// oneDNN (`TF_ENABLE_ONEDNN_OPTS=1`): other formulas and
    /// thread-dependent sums, so parity needs a tolerance.
    #[serde(rename = "onednn")]
    OneDnn,
}

impl Backend {
    /// `"eigen"` or `"onednn"`.
    pub fn label(self) -> &'static str {
        match self {
            Backend::Eigen => "eigen",
            Backend::OneDnn => "onednn",
        }
    }

    /// Parses `eigen` or `onednn` (case-insensitive).
    fn from_label(s: &str) -> Option<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "eigen" => Some(Backend::Eigen),
            "onednn" => Some(Backend::OneDnn),
            _ => None,
        }
    }

    /// The value of `TF_ENABLE_ONEDNN_OPTS` that selects this backend.
    pub fn env_value(self) -> &'static str {
        match self {
            Backend::Eigen => "0",
            Backend::OneDnn => "1",
        }
    }
}

crate::label::display_label!(Backend);

/// How to load TensorFlow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// `--tf-lib`: an installed `tensorflow` package folder (holding
    /// `libtensorflow_cc.so.2` and `libtensorflow_framework.so.2`), tried
    /// first. Default `None`.
    pub tf_lib: Option<PathBuf>,
    /// The backend to select through `TF_ENABLE_ONEDNN_OPTS` before TF
    /// initialises. Default `None`: leave the variable as it is (TF then
    /// turns oneDNN on only on CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI
    /// or AMX).
    pub backend: Option<Backend>,
}

/// The conditions a TF result depends on; record them with every result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostInfo {
    /// The backend TF runs batch norm on.
    pub backend: Backend,
    /// TF's version string (`2.21.0`).
    pub tf_version: String,
    /// The CPU's vendor id (`AuthenticAMD`, `GenuineIntel`): `RSQRTPS`
    /// differs between vendors.
    pub cpu_vendor: String,
    /// TF's intra-op thread count (tfbn sets it for its sessions; oneDNN's
    /// training sums depend on it).
    pub threads: usize,
}

/// A loaded TensorFlow library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TfRuntime {
    /// The library file loaded (`libtensorflow_cc.so.2`, or the
    /// `libtensorflow.so` of a ready folder).
    pub library: PathBuf,
    /// The folder `TENSORFLOW_DIR` pointed at.
    pub tensorflow_dir: PathBuf,
    /// Which place of the search found it (`--tf-lib`, `TFBN_TF_LIB`, …).
    pub origin: String,
    /// Backend, version, CPU vendor and threads.
    pub host: HostInfo,
}

/// What a failed search found, kept for the process (loading is tried once).
#[derive(Debug, Clone)]
struct LoadFailure {
    tried: Vec<(PathBuf, String)>,
}

static RUNTIME: OnceLock<std::result::Result<TfRuntime, LoadFailure>> = OnceLock::new();

/// The intra-op thread count tfbn gives TF sessions: this host's available
/// parallelism (TF's own default).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The backend TF picks when `TF_ENABLE_ONEDNN_OPTS` is unset or not a
/// recognized value: oneDNN only on x86 CPUs with AVX512_VNNI, AVX512_BF16,
/// AVX_VNNI or AMX (docs/bn-arithmetic.md#onednn).
fn backend_from_env() -> Backend {
    match std::env::var("TF_ENABLE_ONEDNN_OPTS")
        .ok()
        .as_deref()
        .map(str::trim)
    {
        Some("0") | Some("false") | Some("False") | Some("FALSE") => Backend::Eigen,
        Some("1") | Some("true") | Some("True") | Some("TRUE") => Backend::OneDnn,
        _ => cpu_default_backend(),
    }
}

/// The backend TF 2.21 picks on this CPU when `TF_ENABLE_ONEDNN_OPTS` is
/// unset: oneDNN only on x86 CPUs with AVX512_VNNI, AVX512_BF16, AVX_VNNI or
/// AMX (read from `/proc/cpuinfo`), else Eigen (docs/bn-arithmetic.md#onednn).
pub fn cpu_default_backend() -> Backend {
    #[cfg(target_arch = "x86_64")]
    {
        let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let line = flags.lines().find(|l| l.starts_with("flags")).unwrap_or("");
        let has = |f: &str| line.split_whitespace().any(|w| w == f);
        if has("avx512_vnni") || has("avx512_bf16") || has("avx_vnni") || has("amx_tile") {
            return Backend::OneDnn;
        }
    }
    Backend::Eigen
}

/// Loads TensorFlow once per process and returns it. A later call with a
/// different [`LoadOptions::backend`] fails: `TF_ENABLE_ONEDNN_OPTS` is read
/// once, when TF initialises, so one process runs one backend.
///
/// When no place works, the error ([`Error::TensorFlowUnavailable`]) lists
/// every place tried and why it failed.
pub fn load(opts: &LoadOptions) -> Result<&'static TfRuntime> {
    let r = RUNTIME.get_or_init(|| load_uncached(opts));
    match r {
        Ok(rt) => {
            if let Some(b) = opts.backend {
                if b != rt.host.backend {
                    return Err(Error::InvalidArgument(format!(
                        "TensorFlow is already running on the {} backend in this process; \
                         TF_ENABLE_ONEDNN_OPTS is read once, so run a separate process for {b}",
                        rt.host.backend
                    )));
                }
            }
            Ok(rt)
        }
        Err(f) => Err(Error::TensorFlowUnavailable {
            tried: f.tried.clone(),
        }),
    }
}

/// The runtime if [`load`] already succeeded in this process.
pub fn loaded() -> Option<&'static TfRuntime> {
    RUNTIME.get().and_then(|r| r.as_ref().ok())
}

fn load_uncached(opts: &LoadOptions) -> std::result::Result<TfRuntime, LoadFailure> {
    // Set before TF initialises: TF reads them once (the variables are only
    // set while no TF code runs yet).
    if let Some(b) = opts.backend {
        std::env::set_var("TF_ENABLE_ONEDNN_OPTS", b.env_value());
    }
    // Level 3 hides TF's logged errors too: every failure tfbn acts on comes
    // back as a status through the C API, while the CPU wheel logs a
    // harmless "failed call to cuInit" error on each session. Lines TF logs
    // while the library loads (before absl is initialised) still appear.
    if std::env::var_os("TF_CPP_MIN_LOG_LEVEL").is_none() {
        std::env::set_var("TF_CPP_MIN_LOG_LEVEL", "3");
    }
    let backend = opts.backend.unwrap_or_else(backend_from_env);
    let mut tried: Vec<(PathBuf, String)> = Vec::new();
    for cand in find::candidates(opts.tf_lib.as_deref()) {
        let Some(dir) = cand.dir else {
            let why = cand.why_none.unwrap_or_else(|| "nothing found".into());
            tried.push((PathBuf::new(), format!("{}: {why}", cand.origin)));
            continue;
        };
        let label = |why: String| {
            (
                dir.clone(),
                format!("{} {}: {why}", cand.origin, dir.display()),
            )
        };
        let (tensorflow_dir, library) = match find::inspect_dir(&dir) {
            Ok(find::Layout::Wheel { cc, framework }) => match find::links_dir(&cc, &framework) {
                Ok(links) => (links, cc),
                Err(why) => {
                    tried.push(label(why));
                    continue;
                }
            },
            Ok(find::Layout::LoaderReady) => (dir.clone(), dir.join(find::LOADER_NAME)),
            Err(why) => {
                tried.push(label(why));
                continue;
            }
        };
        // Checked before the loader sees it: a truncated library is SIGBUS
        // and a foreign one a panic, where this is a message and the next
        // place is tried.
        if let Err(e) = check_before_loading(&dir, &library) {
            tried.push(label(e.to_string()));
            continue;
        }
        std::env::set_var("TENSORFLOW_DIR", &tensorflow_dir);
        match tensorflow::library::load() {
            Ok(()) => {
                let tf_version = tensorflow::version().unwrap_or_else(|_| "unknown".into());
                return Ok(TfRuntime {
                    library,
                    tensorflow_dir,
                    origin: cand.origin,
                    host: HostInfo {
                        backend,
                        tf_version,
                        cpu_vendor: crate::bn::host_cpu_vendor(),
                        threads: default_threads(),
                    },
                });
            }
            Err(why) => tried.push(label(format!(
                "loading {} failed: {why}",
                library.display()
            ))),
        }
    }
    Err(LoadFailure { tried })
}

/// Checks the C-API library and, when the folder holds it, the framework
/// library it needs, so that neither is handed to the dynamic loader
/// broken; and that the two together define the C-API functions tfbn
/// calls (the wheel splits them: `TF_Version` in the C-API library,
/// `TF_NewStatus` in the framework; `dlsym` searches both).
fn check_before_loading(dir: &std::path::Path, library: &std::path::Path) -> Result<()> {
    let mut missing = elf::missing_symbols(library, elf::REQUIRED_SYMBOLS)?;
    let framework = dir.join(find::FRAMEWORK_LIB);
    if framework.exists() {
        missing = elf::missing_symbols(&framework, &missing)?;
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::LibraryInvalid {
        path: library.to_path_buf(),
        what: format!(
            "neither it nor {} defines {} (not TensorFlow's C API)",
            find::FRAMEWORK_LIB,
            missing.join(", ")
        ),
    })
}

pub use crate::error::describe_tried;

/// Builds an [`Error::TensorFlowFailed`] from a TF status.
pub(crate) fn tf_error(what: impl Into<String>, status: impl std::fmt::Display) -> Error {
    Error::TensorFlowFailed {
        what: what.into(),
        status: status.to_string(),
    }
}

crate::label::from_label!(Backend, "backend");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_labels() {
        for b in [Backend::Eigen, Backend::OneDnn] {
            assert_eq!(Backend::from_label(b.label()), Some(b));
        }
        assert_eq!(Backend::from_label("mkl"), None);
        assert_eq!(Backend::OneDnn.env_value(), "1");
    }
}
