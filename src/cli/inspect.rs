//! `tfbn inspect PATH [--json]` (PATH may also be a `.safetensors` file,
//! shown by `export::inspect_safetensors`).

use std::io::Write;

use anyhow::Result;
use tfbn::inspect::{inspect_with, InspectReport, LayerJson, VarJson};
use tfbn::source::Source;

use super::{InputPath, Outcome};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    found: super::LayerArgs,
    /// Checkpoint prefix, `.index` file, checkpoint folder, SavedModel folder,
    /// or a `.safetensors` file (shows an export's layers and conventions).
    path: InputPath,
    /// Print the report as JSON (stable schema; see the README).
    #[arg(long)]
    json: bool,
    /// Who reads the variables: native (tfbn's reader), tf (TensorFlow's
    /// RestoreV2; layer ranges from TF's values), or both (every variable
    /// read both ways and compared bitwise; exit 1 on a difference).
    #[arg(long, value_enum, default_value = "native")]
    reader: Reader,
    /// Folder of an installed `tensorflow` package (holding
    /// libtensorflow_cc.so.2), for --reader tf|both.
    #[arg(long, value_name = "DIR")]
    tf_lib: Option<std::path::PathBuf>,
}

/// Which reader `inspect` uses.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// tfbn's own reader (no TensorFlow).
    Native,
    /// TensorFlow's RestoreV2.
    Tf,
    /// Both, compared bitwise.
    Both,
}

pub fn run(args: Args) -> Result<Outcome> {
    if tfbn::export::describe::is_safetensors_file(&args.path) {
        return super::export::inspect_safetensors(&args.path, args.json);
    }
    let opened = super::open_source(&args.path, &args.found)?;
    let source = opened.source;
    let mut report = inspect_with(&source, &opened.declared)?;
    let tf_read = match args.reader {
        Reader::Native => None,
        Reader::Tf | Reader::Both => Some(read_with_tf(&source, &mut report, &args)?),
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        if let (Some(r), Some(obj)) = (&tf_read, v.as_object_mut()) {
            obj.insert("reader".into(), serde_json::to_value(r)?);
        }
        serde_json::to_writer_pretty(&mut out, &v)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &report)?;
        if let Some(r) = &tf_read {
            print_reader(&mut out, r)?;
        }
    }
    Ok(match &tf_read {
        Some(r) if !r.mismatches.is_empty() => Outcome::Failed,
        _ => Outcome::Ok,
    })
}

/// What `--reader tf|both` adds to the report (`"reader"` in the JSON).
#[derive(serde::Serialize)]
struct ReaderReport {
    /// `tf` or `both`.
    mode: &'static str,
    /// The TensorFlow that read the values.
    tf_version: String,
    /// Backend, TF version, CPU vendor and threads of that TensorFlow.
    host: tfbn::tf::HostInfo,
    /// Where it was found.
    tf_origin: String,
    /// Variables TF read.
    read: usize,
    /// Variables of types TF cannot return (not read).
    skipped: Vec<String>,
    /// `both`: variables whose values differ between the readers.
    mismatches: Vec<tfbn::tf::read::ReaderMismatch>,
}

/// Reads every variable through TF; `tf`: the layer ranges come from TF's
/// values; `both`: also compares every variable with the native reader.
fn read_with_tf(source: &Source, report: &mut InspectReport, args: &Args) -> Result<ReaderReport> {
    let rt = tfbn::tf::load(&tfbn::tf::LoadOptions {
        tf_lib: args.tf_lib.clone(),
        backend: None,
    })?;
    let (read, skipped, mismatches) = if args.reader == Reader::Both {
        let c = tfbn::tf::read::compare_readers(rt, source)?;
        (c.compared, c.skipped, c.mismatches)
    } else {
        let values = tfbn::tf::read::read_source(rt, source)?;
        let by_key: std::collections::HashMap<&str, &tfbn::Tensor> =
            values.iter().map(|(k, t)| (k.as_str(), t)).collect();
        for l in &mut report.layers {
            let range = |v: &Option<VarJson>| {
                v.as_ref()
                    .and_then(|v| by_key.get(v.key.as_str()))
                    .map(|t| range_of(t))
            };
            if let Some(r) = range(&l.variables.moving_mean) {
                l.moving_mean_range = r;
            }
            if let Some(r) = range(&l.variables.moving_variance) {
                l.moving_variance_range = r;
            }
        }
        let skipped = source
            .variables()
            .iter()
            .filter(|v| !by_key.contains_key(v.key.as_str()))
            .map(|v| v.key.clone())
            .collect();
        (values.len(), skipped, Vec::new())
    };
    Ok(ReaderReport {
        mode: if args.reader == Reader::Both {
            "both"
        } else {
            "tf"
        },
        tf_version: rt.host.tf_version.clone(),
        host: rt.host.clone(),
        tf_origin: rt.origin.clone(),
        read,
        skipped,
        mismatches,
    })
}

/// `[min, max]` of a float tensor's non-NaN values (as `inspect` shows them).
fn range_of(t: &tfbn::Tensor) -> Option<[Option<f64>; 2]> {
    if !t.dtype.is_bn_float() {
        return None;
    }
    let values = t.to_f64_vec()?;
    let mut lo: Option<f64> = None;
    let mut hi: Option<f64> = None;
    for x in values.into_iter().filter(|x| !x.is_nan()) {
        lo = Some(lo.map_or(x, |l| l.min(x)));
        hi = Some(hi.map_or(x, |h| h.max(x)));
    }
    Some([lo, hi])
}

fn print_reader(out: &mut impl Write, r: &ReaderReport) -> std::io::Result<()> {
    writeln!(
        out,
        "reader {}: TensorFlow {} ({}) read {} variables{}",
        r.mode,
        r.tf_version,
        r.tf_origin,
        r.read,
        if r.skipped.is_empty() {
            String::new()
        } else {
            format!(
                ", skipped {} it cannot return ({})",
                r.skipped.len(),
                r.skipped.join(", ")
            )
        }
    )?;
    if r.mode == "both" {
        if r.mismatches.is_empty() {
            writeln!(
                out,
                "native and TensorFlow readers agree bit for bit on all {} variables",
                r.read
            )?;
        } else {
            writeln!(
                out,
                "{} variables differ between the native and TensorFlow readers:",
                r.mismatches.len()
            )?;
            for m in &r.mismatches {
                writeln!(out, "  {}: {}", m.key, m.what)?;
            }
        }
    }
    Ok(())
}

fn fmt_range(r: &Option<[Option<f64>; 2]>) -> String {
    match r {
        Some([Some(lo), Some(hi)]) => format!("{lo:.4}..{hi:.4}"),
        Some(_) => "all NaN".into(),
        None => "-".into(),
    }
}

fn present(v: &Option<VarJson>, c: char) -> char {
    if v.is_some() {
        c
    } else {
        '-'
    }
}

/// Where a value came from, in a few words.
fn source_label(s: &tfbn::testing::hyper::HyperSource) -> String {
    serde_json::to_value(s)
        .ok()
        .and_then(|v| {
            let kind = v.get("kind")?.as_str()?.to_string();
            let at = v
                .get("node")
                .or_else(|| v.get("path"))
                .or_else(|| v.get("file"))
                .and_then(|n| n.as_str())
                .map(|n| format!(" {n}"))
                .unwrap_or_default();
            Some(format!("{kind}{at}"))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn print_layer(out: &mut impl Write, l: &LayerJson) -> std::io::Result<()> {
    let vars = &l.variables;
    let flags: String = [
        present(&vars.gamma, 'g'),
        present(&vars.beta, 'b'),
        present(&vars.moving_mean, 'm'),
        present(&vars.moving_variance, 'v'),
    ]
    .iter()
    .collect();
    writeln!(
        out,
        "  {:<32} {:>8} {:<9} {:<12} {:<5} {:<22} {:<22}{}",
        l.name,
        l.channels,
        l.dtype,
        l.found_by.label(),
        flags,
        fmt_range(&l.moving_mean_range),
        fmt_range(&l.moving_variance_range),
        if l.renorm.is_some() { " renorm" } else { "" }
    )?;
    let h = &l.hyper;
    writeln!(
        out,
        "      epsilon {} ({}), momentum {} ({}), axis {} ({})",
        h.epsilon.value,
        source_label(&h.epsilon.source),
        h.momentum.value,
        source_label(&h.momentum.source),
        h.axis.value,
        source_label(&h.axis.source)
    )?;
    let mut extra = Vec::new();
    if let Some(v) = h.virtual_batch_size.value {
        extra.push(format!(
            "virtual_batch_size {v} ({})",
            source_label(&h.virtual_batch_size.source)
        ));
    }
    if l.renorm.is_some() {
        extra.push(format!(
            "renorm_clipping {} ({}), renorm_momentum {} ({})",
            h.renorm_clipping.value,
            source_label(&h.renorm_clipping.source),
            h.renorm_momentum.value,
            source_label(&h.renorm_momentum.source)
        ));
    }
    if h.fused.value.is_some() || h.fused.is_declared() {
        extra.push(format!(
            "fused {} ({})",
            tfbn::declared::fused_label(h.fused.value),
            source_label(&h.fused.source)
        ));
    }
    if !l.assumed.is_empty() {
        extra.push(format!(
            "assumed {}",
            tfbn::testing::hyper::Assumed::join(&l.assumed)
        ));
    }
    if !extra.is_empty() {
        writeln!(out, "      {}", extra.join(", "))?;
    }
    for (role, v) in [
        ("gamma", &vars.gamma),
        ("beta", &vars.beta),
        ("moving_mean", &vars.moving_mean),
        ("moving_variance", &vars.moving_variance),
    ] {
        if let Some(v) = v {
            writeln!(out, "      {role:<16} {}", v.key)?;
        }
    }
    Ok(())
}

fn print_table(out: &mut impl Write, r: &InspectReport) -> std::io::Result<()> {
    let fmt = serde_json::to_value(r.format)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    writeln!(
        out,
        "{}: {fmt}, {} naming, {} variables, {} batch-norm layers",
        r.path,
        r.style.label(),
        r.variables.len(),
        r.layers.len()
    )?;
    if !r.layers.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "  {:<32} {:>8} {:<9} {:<12} {:<5} {:<22} {:<22}",
            "layer", "channels", "dtype", "found", "gbmv", "moving_mean", "moving_variance"
        )?;
        for l in &r.layers {
            print_layer(out, l)?;
        }
    }
    let mut by_role: std::collections::BTreeMap<String, usize> = Default::default();
    for v in &r.variables {
        let role = serde_json::to_value(v.role)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        *by_role.entry(role).or_default() += 1;
    }
    let roles: Vec<String> = by_role.iter().map(|(k, n)| format!("{n} {k}")).collect();
    if !r.layers.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "found: how the layer was found (naming convention, graph op, declared mapping, \
             Keras model config); \
             gbmv: which of gamma, beta, moving_mean, moving_variance it has (- = absent)"
        )?;
    }
    writeln!(out)?;
    writeln!(out, "variables by role: {}", roles.join(", "))?;
    Ok(())
}
