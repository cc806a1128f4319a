//! Command definitions and dispatch.

mod apply;
mod export;
mod inspect;
mod lint;
mod snapshot;
mod verify;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Move TensorFlow batch-norm layers out of TensorFlow and prove that nothing
/// changed on the way.
#[derive(Parser, Debug)]
#[command(name = "tfbn", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List a checkpoint's variables and batch-norm layers.
    Inspect(inspect::Args),
    /// Write variables to a safetensors file.
    Export(export::Args),
    /// Run one layer natively on a `.npy` input.
    Apply(apply::Args),
    /// Write or check a numeric snapshot of the layers' outputs.
    Snapshot(snapshot::Args),
    /// Run every batch-norm layer through TensorFlow and natively, and compare.
    Verify(verify::Args),
    /// Check batch-norm layers for pitfalls (exit 1 on findings at --deny).
    Lint(lint::Args),
}

/// Exit status for a command that ran.
pub enum Outcome {
    /// Everything passed.
    Ok,
    /// A check failed (parity, lint, verify, snapshot).
    Failed,
}

pub fn run() -> ExitCode {
    // SIGINT, SIGTERM, SIGHUP: remove the temp files being written, exit
    // 130, 143, 129. Without the handlers the command still works; it only
    // leaves temp files for the next write's sweep.
    if let Err(e) = tfbn::testing::cleanup::install_signal_cleanup() {
        let _ = writeln!(
            std::io::stderr(),
            "tfbn: warning: cannot install signal handlers ({e}); an interrupted write leaves its temporary file"
        );
    }
    quiet_broken_pipe();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let result = match cli.command {
        Command::Inspect(a) => inspect::run(a),
        Command::Export(a) => export::run(a),
        Command::Apply(a) => apply::run(a),
        Command::Snapshot(a) => snapshot::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Lint(a) => lint::run(a),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            let mut msg = format!("tfbn: error: {e}");
            for cause in e.chain().skip(1) {
                let c = cause.to_string();
                if !msg.contains(&c) {
                    msg.push_str(&format!(": {c}"));
                }
            }
            if let Some(h) = e
                .chain()
                .find_map(|c| c.downcast_ref::<tfbn::Error>())
                .and_then(error_hint)
            {
                msg.push_str(&format!(" ({h})"));
            }
            let _ = writeln!(std::io::stderr(), "{msg}");
            ExitCode::from(2)
        }
    }
}

/// A reader that stops early (`tfbn inspect … | head -1`) closes the pipe;
/// Rust ignores SIGPIPE, so the next `print!` panics with "failed printing
/// to stdout: Broken pipe". That is not an error of tfbn's: exit 0 without
/// a word, as `cat` does. Every other panic goes to the default hook.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if payload.contains("failed printing to stdout") && payload.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// The error is a write to a closed pipe: an `io::Error`, or one that
/// `serde_json` wrapped while writing a report.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|j| j.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    })
}

/// The flags that answer a library error, where one does: the library's
/// messages speak of settings and files; the flags are the CLI's.
fn error_hint(e: &tfbn::Error) -> Option<String> {
    use tfbn::Error as E;
    Some(match e {
        E::OutputExists { .. } => "pass --force to replace it".into(),
        E::TensorFlowUnavailable { .. } => "--tf-lib DIR points one run at DIR".into(),
        E::HyperFileInvalid { .. } => "the sidecar given with --hyper".into(),
        E::PatternMatchesNoLayer {
            setting,
            sidecar: None,
            ..
        } => format!("given with --{setting}"),
        E::ExportLayerNamesCollide { .. } => "--rename FROM=TO renames a layer".into(),
        _ => return None,
    })
}

/// How settings are declared on the command line.
pub const DECLARE_LEGEND: &str = "declare settings with --epsilon, --momentum, --axis, --fused, \
    --variance [GLOB=]VALUE, a layer's variables with --bn [GLOB:]ROLE=NAME,…, or either in \
    --hyper FILE (a TOML/JSON sidecar, or the model's .keras file or config JSON)";

/// Prints the library's notes on stderr, then, where one asks for a
/// declaration (the library words every such note with "declare";
/// `tests/it/keras.rs` checks the hint follows one), how to declare on the
/// command line.
pub fn print_notes<S: AsRef<str>>(notes: impl IntoIterator<Item = S>) {
    let mut asks = false;
    for n in notes {
        let n = n.as_ref();
        asks |= n.contains("declare");
        eprintln!("note: {n}");
    }
    if asks {
        eprintln!("hint: {DECLARE_LEGEND}");
    }
}

/// How to declare what `assumed` lists for `layer`, in flags.
pub fn declare_hint(layer: &str, assumed: &[tfbn::model::Assumed]) -> String {
    let flags: Vec<String> = assumed
        .iter()
        .map(|a| format!("--{} {layer}=VALUE", a.setting()))
        .collect();
    format!(
        "declare with {} or a --hyper sidecar; --assume-defaults accepts TF's defaults",
        flags.join(", ")
    )
}

/// What a command opened: the source with its declared layers, the
/// declared settings (sidecar first, then flags), and the sidecar's lint
/// allowances.
pub struct Opened {
    /// The checkpoint or SavedModel.
    pub source: tfbn::source::Source,
    /// Declared settings, in the order they apply.
    pub declared: tfbn::declared::Declared,
    /// `CODE[=LAYER_GLOB]` allowances from the sidecar.
    pub allow: Vec<String>,
}

/// Opens the user's path, printing on stderr how it was read where that is
/// worth knowing (a `checkpoint` file that named another machine's folder),
/// and gathers the declarations of `--hyper` and the flags.
fn open_source(path: &std::path::Path, layers: &LayerArgs) -> anyhow::Result<Opened> {
    // `--hyper` takes a Keras model config too (a `.keras`, a Keras 2 `.h5`,
    // a `config.json`): it supplies a Keras weights file's settings.
    let keras_config = match &layers.hyper {
        Some(f) => tfbn::testing::keras::read_config_file(f)?,
        None => None,
    };
    let sidecar = match (&layers.hyper, &keras_config) {
        (Some(f), None) => tfbn::declared::read_hyper_file(f)?,
        _ => tfbn::declared::HyperFile::default(),
    };
    let mappings = sidecar
        .bn
        .iter()
        .chain(&layers.bn)
        .map(|m| m.parse::<tfbn::testing::mapping::LayerMapping>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("--bn: {e}"))?;
    let mut declared = sidecar.declared;
    for d in layers
        .epsilon
        .iter()
        .chain(&layers.momentum)
        .chain(&layers.axis)
        .chain(&layers.fused)
        .chain(&layers.variance)
    {
        declared.push(d.clone());
    }
    let mut source = tfbn::source::Source::open(path)?;
    if let Some(cfg) = &keras_config {
        source = tfbn::testing::keras::with_config(source, cfg)?;
    }
    source.declare_layers(mappings);
    print_notes(source.notes());
    Ok(Opened {
        source,
        declared,
        allow: sidecar.allow,
    })
}

fn declaration(name: &str, text: &str) -> Result<tfbn::declared::Declaration, String> {
    tfbn::declared::Declaration::parse_flag(name, text).map_err(|e| e.to_string())
}

fn parse_epsilon(s: &str) -> Result<tfbn::declared::Declaration, String> {
    declaration("epsilon", s)
}

fn parse_momentum(s: &str) -> Result<tfbn::declared::Declaration, String> {
    declaration("momentum", s)
}

fn parse_axis(s: &str) -> Result<tfbn::declared::Declaration, String> {
    declaration("axis", s)
}

fn parse_fused(s: &str) -> Result<tfbn::declared::Declaration, String> {
    declaration("fused", s)
}

fn parse_variance(s: &str) -> Result<tfbn::declared::Declaration, String> {
    declaration("variance", s)
}

/// How layers are found and what the user declares about them, shared by
/// every command that reads layers.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LayerArgs {
    /// Declare batch-norm layers whose variables follow no naming convention
    /// and that no graph shows: `[GLOB:]ROLE=NAME,…`, e.g.
    /// `'*_bn:gamma=scale,beta=offset,moving_mean=pop_mean,moving_variance=pop_var'`
    /// (every scope matching GLOB holding those names is a layer; roles:
    /// gamma, beta, moving_mean, moving_variance, moving_stddev,
    /// renorm_mean, renorm_stddev). Repeatable.
    #[arg(long = "bn", value_name = "[GLOB:]ROLE=NAME,…")]
    pub bn: Vec<String>,
    /// Declare ε for every layer or those whose name or object path matches
    /// GLOB (`*`, `?`); repeatable, a later one wins. Marked `flag`.
    #[arg(long, value_name = "[GLOB=]VALUE", allow_hyphen_values = true, value_parser = parse_epsilon)]
    pub epsilon: Vec<tfbn::declared::Declaration>,
    /// Declare the momentum, TF convention (weight of the old value, e.g.
    /// 0.99), for every layer or those matching GLOB.
    #[arg(long, value_name = "[GLOB=]VALUE", allow_hyphen_values = true, value_parser = parse_momentum)]
    pub momentum: Vec<tfbn::declared::Declaration>,
    /// Declare the channel axis (negative counts from the end) for every
    /// layer or those matching GLOB.
    #[arg(long, value_name = "[GLOB=]AXIS", allow_hyphen_values = true, value_parser = parse_axis)]
    pub axis: Vec<tfbn::declared::Declaration>,
    /// Declare the layer's `fused` argument (tf-keras, tf1-layers): true,
    /// false, or auto (fused=None: TF's rule decides).
    #[arg(long, value_name = "[GLOB=]true|false|auto", value_parser = parse_fused)]
    pub fused: Vec<tfbn::declared::Declaration>,
    /// Declare what the stored moving variance holds (biased or bessel);
    /// values are never converted.
    #[arg(long, value_name = "[GLOB=]biased|bessel", value_parser = parse_variance)]
    pub variance: Vec<tfbn::declared::Declaration>,
    /// Read declarations from a TOML or JSON sidecar:
    /// `{"layers": {"GLOB": {"epsilon": 1e-5, "momentum": 0.9, "axis": 3,
    /// "fused": true, "variance": "bessel"}}, "bn": ["GLOB:ROLE=NAME,…"],
    /// "allow": ["CODE=GLOB"]}`. Flags win over the sidecar. Marked
    /// `sidecar`. For a Keras weights file, FILE may instead be the model's
    /// `.keras`, its Keras 2 `.h5` or its config JSON: the settings then
    /// come from that config (marked `keras_config`).
    #[arg(long = "hyper", value_name = "FILE")]
    pub hyper: Option<PathBuf>,
}

/// A path argument shared by the commands.
pub type InputPath = PathBuf;
