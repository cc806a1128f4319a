//! `tfbn verify PATH`: every batch-norm layer through TensorFlow and the
//! native layer, compared (see `tfbn::verify`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use tfbn::bn::BnApi;
use tfbn::parity::Tolerance;
use tfbn::testing::prepare::Overrides;
use tfbn::tf::Backend;
use tfbn::verify::{self, Fault, InputCase, Mode, Spatial, Status, VerifyReport, VerifySettings};
use tfbn::FloatDType;

use super::{InputPath, Outcome};

/// Which modes to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModeArg {
    /// Moving statistics.
    Inference,
    /// Batch statistics and one moving-average update.
    Training,
    /// Both.
    Both,
}

/// The TF backend.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendArg {
    /// TF_ENABLE_ONEDNN_OPTS=0: Eigen kernels (bit-exact target).
    Eigen,
    /// TF_ENABLE_ONEDNN_OPTS=1: oneDNN kernels (compared within a ULP budget).
    Onednn,
}

/// Fault for the self-test.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultArg {
    /// Native epsilon × 10.
    Epsilon,
    /// Native momentum in PyTorch's convention (1 − m).
    Momentum,
    /// Native moving variance with the other Bessel convention.
    Bessel,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    found: super::LayerArgs,
    /// Checkpoint prefix, `.index` file, checkpoint folder or SavedModel folder.
    path: InputPath,
    /// Only these layers (name or object path as `tfbn inspect` lists them;
    /// repeatable). Default: every layer.
    #[arg(long = "layer", value_name = "NAME")]
    layers: Vec<String>,
    /// Which modes to compare.
    #[arg(long, value_enum, default_value = "both")]
    mode: ModeArg,
    /// TF API whose ops both sides run: fused, tf1-layers, tf-keras, keras3,
    /// nn. Default: what the checkpoint's naming style implies.
    #[arg(long)]
    api: Option<String>,
    /// TF's CPU kernels; sets TF_ENABLE_ONEDNN_OPTS before TF starts.
    #[arg(long, value_enum, default_value = "eigen")]
    tf_backend: BackendArg,
    /// exact | ulp:N | ulp-of-max:N | abs:X. Default: exact for eigen; for
    /// onednn the oneDNN budget ulp-of-max:max(64, 2·√R), R = values per
    /// channel.
    #[arg(long)]
    tolerance: Option<String>,
    /// Batch size of the inputs.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Spatial dimensions between batch and channels: `H,W` (4-D), `D,H,W`
    /// (5-D), `L` (3-D) or `none` (2-D). Default: 2-D for layers that ran
    /// non-fused in tf_keras / TF1 (dense), else 5,6.
    #[arg(long)]
    spatial: Option<String>,
    /// Seed of the inputs.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Input cases (comma-separated): normal, large_offset, near_constant,
    /// tiny. Default: all for eigen, normal,tiny for onednn.
    #[arg(long, value_delimiter = ',')]
    cases: Vec<String>,
    /// Input types (x and y; repeatable or comma-separated): f32, f16, bf16,
    /// f64, or all. Each runs on both sides as the API runs it in TF
    /// (16-bit: fused op with float32 statistics, the Keras layers'
    /// float32 upcast, or nn in the 16-bit type; f64: a float64 layer); a
    /// type the API refuses in TF is reported not applicable.
    #[arg(
        long = "dtype",
        value_name = "TYPE",
        value_delimiter = ',',
        default_value = "f32"
    )]
    dtypes: Vec<String>,
    /// Print the report as JSON (schema in the README).
    #[arg(long)]
    json: bool,
    /// Write inputs, TF outputs and native outputs as .npy files here
    /// (DIR/<layer>/<dtype>/<mode>/<case>/, in their own types; bfloat16 as
    /// <u2 bit patterns).
    #[arg(long, value_name = "DIR")]
    dump: Option<PathBuf>,
    /// Accept TF's defaults for settings that nothing records and nobody
    /// declared: rows resting on them pass instead of being `unproven`
    /// (the report still lists them as `assumed`).
    #[arg(long)]
    assume_defaults: bool,
    /// Folder of an installed `tensorflow` package (holding
    /// libtensorflow_cc.so.2); when given, the only place tried (else
    /// TFBN_TF_LIB, ./.venv, the checkout's .venv, python3's tensorflow).
    #[arg(long, value_name = "DIR")]
    tf_lib: Option<PathBuf>,
    /// Self-test: break the native side on purpose (epsilon, momentum or
    /// bessel) and check that verify fails and names the cause.
    #[arg(long, value_enum, hide = true)]
    inject_fault: Option<FaultArg>,
}

fn settings(args: &Args) -> Result<VerifySettings> {
    let api = match &args.api {
        Some(s) => match s.parse::<BnApi>().ok() {
            Some(a) => Some(a),
            None => bail!("--api {s:?}: expected fused, tf1-layers, tf-keras, keras3 or nn"),
        },
        None => None,
    };
    let tolerance = match &args.tolerance {
        Some(t) => Some(t.parse::<Tolerance>()?),
        None => None,
    };
    let spatial = match args.spatial.as_deref().map(str::trim) {
        None => Spatial::Auto,
        Some("none") | Some("") => Spatial::Dims(Vec::new()),
        Some(s) => {
            let dims = s
                .split(',')
                .map(|d| d.trim().parse::<usize>())
                .collect::<std::result::Result<Vec<_>, _>>();
            match dims {
                Ok(d) if d.len() <= 3 && d.iter().all(|&v| v > 0) => Spatial::Dims(d),
                _ => bail!("--spatial {s:?}: expected none, L, H,W or D,H,W (positive sizes)"),
            }
        }
    };
    let cases = if args.cases.is_empty() {
        Vec::new()
    } else {
        args.cases
            .iter()
            .map(|c| {
                c.parse::<InputCase>().map_err(|_| {
                    anyhow::anyhow!(
                        "--cases {c:?}: expected normal, large_offset, near_constant or tiny"
                    )
                })
            })
            .collect::<Result<_>>()?
    };
    let mut dtypes = Vec::new();
    for d in &args.dtypes {
        match d.trim() {
            "all" => dtypes.extend(FloatDType::ALL),
            other => match other.parse::<FloatDType>().ok() {
                Some(t) => dtypes.push(t),
                None => bail!("--dtype {d:?}: expected f32, f16, bf16, f64 or all"),
            },
        }
    }
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    Ok(VerifySettings {
        layers: args.layers.clone(),
        modes: match args.mode {
            ModeArg::Inference => vec![Mode::Inference],
            ModeArg::Training => vec![Mode::Training],
            ModeArg::Both => vec![Mode::Inference, Mode::Training],
        },
        overrides: Overrides {
            declared: Default::default(),
            api,
        },
        backend: match args.tf_backend {
            BackendArg::Eigen => Backend::Eigen,
            BackendArg::Onednn => Backend::OneDnn,
        },
        tolerance,
        batch: args.batch,
        spatial,
        seed: args.seed,
        cases,
        dtypes,
        dump: args.dump.clone(),
        inject_fault: args.inject_fault.map(|f| match f {
            FaultArg::Epsilon => Fault::Epsilon,
            FaultArg::Momentum => Fault::Momentum,
            FaultArg::Bessel => Fault::Bessel,
        }),
        tf_lib: args.tf_lib.clone(),
        assume_defaults: args.assume_defaults,
    })
}

pub fn run(args: Args) -> Result<Outcome> {
    let mut settings = settings(&args)?;
    let opened = super::open_source(&args.path, &args.found)?;
    settings.overrides.declared = opened.declared;
    let report = verify::verify(&opened.source, &settings)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &report)?;
    }
    Ok(if report.passed {
        Outcome::Ok
    } else {
        Outcome::Failed
    })
}

fn fmt_sci(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.is_finite() {
        format!("{v:.2e}")
    } else {
        "inf".into()
    }
}

fn fmt_ulp(u: u64) -> String {
    if u == u64::MAX {
        "NaN".into()
    } else {
        u.to_string()
    }
}

fn print_table(out: &mut impl Write, r: &VerifyReport) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: {} naming; TensorFlow {} ({}), {}, {} threads; tolerance {}; seed {}, batch {}, cases {}; dtypes {}",
        r.path,
        r.style.label(),
        r.host.tf_version,
        r.host.backend,
        r.host.cpu_vendor,
        r.host.threads,
        r.tolerance,
        r.seed,
        r.batch,
        r.cases.iter().map(|c| c.label()).collect::<Vec<_>>().join(","),
        r.dtypes
            .iter()
            .map(|d| d.short())
            .collect::<Vec<_>>()
            .join(",")
    )?;
    if let Some(f) = r.injected_fault {
        writeln!(out, "self-test: fault {f:?} injected into the native side")?;
    }
    writeln!(out)?;
    if r.layers.is_empty() {
        writeln!(
            out,
            "no batch-norm layers found: nothing was verified — FAIL"
        )?;
        return Ok(());
    }
    let name_w = r
        .layers
        .iter()
        .map(|l| l.name.len())
        .max()
        .unwrap_or(5)
        .clamp(5, 40);
    let label = |m: &tfbn::verify::ModeReport| {
        if m.assumed.is_empty() {
            "-".to_string()
        } else {
            m.assumed
                .iter()
                .map(|a| a.label())
                .collect::<Vec<_>>()
                .join(",")
        }
    };
    let assumed_w = r
        .layers
        .iter()
        .flat_map(|l| &l.modes)
        .map(|m| label(m).len())
        .max()
        .unwrap_or(7)
        .max(7);
    writeln!(
        out,
        "  {:<name_w$} {:<10} {:<5} {:<9} {:<9} {:>9} {:>8} {:>8} {:>9}  {:<28} {:<assumed_w$} result",
        "layer",
        "api",
        "dtype",
        "path",
        "mode",
        "bitwise",
        "max ulp",
        "ulp/max",
        "max abs",
        "worst",
        "assumed",
    )?;
    let mut notes: Vec<String> = Vec::new();
    for l in &r.layers {
        for n in &l.notes {
            notes.push(format!("{}: {n}", l.name));
        }
        for m in &l.modes {
            let path = match m.path {
                Some(tfbn::tf::bn::TfPath::Fused) => "fused",
                Some(tfbn::tf::bn::TfPath::NonFused) => "non-fused",
                None => "-",
            };
            let worst = m
                .worst_output()
                .and_then(|o| {
                    o.worst.as_ref().map(|w| match w.channel {
                        Some(c) => format!("{} ch {c} ({})", o.name, w.case),
                        None => format!("{} ({})", o.name, w.case),
                    })
                })
                .unwrap_or_else(|| "-".into());
            let result = match m.status {
                Status::Pass => "pass",
                Status::Fail => "FAIL",
                Status::Unproven => "UNPROVEN",
                Status::Unsupported => "UNSUPPORTED",
                Status::Error => "ERROR",
                Status::NotApplicable => "not applicable",
            };
            let (bitwise, ulp, ulp_max, abs) = if m.outputs.is_empty() {
                (
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                    "-".to_string(),
                )
            } else {
                (
                    format!("{:.2}%", 100.0 * m.bitwise_fraction()),
                    fmt_ulp(m.max_ulp()),
                    fmt_ulp(m.max_ulp_of_max()),
                    fmt_sci(m.max_abs()),
                )
            };
            let assumed = label(m);
            writeln!(
                out,
                "  {:<name_w$} {:<10} {:<5} {:<9} {:<9} {:>9} {:>8} {:>8} {:>9}  {:<28} {:<assumed_w$} {}",
                l.name,
                l.api.label(),
                m.dtype.short(),
                path,
                m.mode.label(),
                bitwise,
                ulp,
                ulp_max,
                abs,
                worst,
                assumed,
                result
            )?;
            let row = format!("{} {} {}", l.name, m.dtype.short(), m.mode.label());
            if let Some(e) = &m.error {
                notes.push(format!("{row}: {e}"));
            }
            for c in &m.causes {
                notes.push(format!("{row}: cause {}: {}", c.kind, c.message));
            }
        }
    }
    writeln!(out)?;
    if r.layers.iter().any(|l| l.own_graph != "none") {
        writeln!(
            out,
            "  own graph: each layer's own batch-norm nodes from the file's graph, run in TF \
             against the native layer"
        )?;
        for l in &r.layers {
            let runs: Vec<String> = l
                .own_graph_runs
                .iter()
                .map(|g| {
                    let worst = g
                        .outputs
                        .iter()
                        .filter(|o| !o.passed)
                        .map(|o| format!(" {} max {} ulp", o.name, fmt_ulp(o.max_ulp)))
                        .collect::<String>();
                    format!("{} {}{worst}", g.mode.label(), g.node)
                })
                .collect();
            let verdict = if l.own_graph.starts_with("failed") {
                l.own_graph.replacen("failed", "FAILED", 1)
            } else {
                l.own_graph.clone()
            };
            if runs.is_empty() {
                writeln!(out, "  {:<name_w$} {verdict}", l.name)?;
            } else {
                writeln!(out, "  {:<name_w$} {verdict} ({})", l.name, runs.join("; "))?;
            }
        }
        writeln!(out)?;
    }
    // The library names the unproven settings; the flags are the CLI's.
    for l in &r.layers {
        let unproven: Vec<tfbn::model::Assumed> = l
            .assumed
            .iter()
            .copied()
            .filter(|a| {
                l.modes
                    .iter()
                    .any(|m| m.status == Status::Unproven && m.assumed.contains(a))
            })
            .collect();
        if !unproven.is_empty() {
            notes.push(format!(
                "{}: {}",
                l.name,
                super::declare_hint(&l.name, &unproven)
            ));
        }
    }
    for n in &notes {
        writeln!(out, "  {n}")?;
    }
    if !notes.is_empty() {
        writeln!(out)?;
    }
    let na = if r.summary.not_applicable > 0 {
        format!(", {} not applicable", r.summary.not_applicable)
    } else {
        String::new()
    };
    let assumed: Vec<&str> = r
        .layers
        .iter()
        .filter(|l| !l.assumed.is_empty())
        .map(|l| l.name.as_str())
        .collect();
    if r.assume_defaults && !assumed.is_empty() {
        writeln!(
            out,
            "--assume-defaults: {} layer(s) pass on TF's defaults, not on recorded or declared \
             settings: {}",
            assumed.len(),
            assumed.join(", ")
        )?;
    }
    let own = if r.summary.own_graph_passed + r.summary.own_graph_failed > 0 {
        format!(
            "; own graph: {} passed, {} failed",
            r.summary.own_graph_passed, r.summary.own_graph_failed
        )
    } else {
        String::new()
    };
    let verdict = if r.passed {
        "PASS"
    } else if r.summary.failed == 0 && r.summary.own_graph_failed == 0 && r.summary.unproven > 0 {
        "UNPROVEN"
    } else {
        "FAIL"
    };
    writeln!(
        out,
        "{} layers, {} layer-modes: {} passed, {} failed, {} unproven{na}{own} — {verdict}",
        r.summary.layers, r.summary.modes, r.summary.passed, r.summary.failed, r.summary.unproven,
    )?;
    Ok(())
}
