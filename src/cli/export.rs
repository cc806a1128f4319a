//! `tfbn export PATH -o OUT.safetensors [--preset tf|pytorch|candle|burn]
//! [--layers GLOB…] [--rename FROM=TO…] [--fold] [--dtype keep|f32|f16|bf16|f64]
//! [--all-variables] [--epsilon|--momentum|--axis|--fused|--variance [GLOB=]V…]
//! [--hyper FILE] [--verify] [--force] [--no-sync] [--quiet]`,
//! and the safetensors half of `tfbn inspect`.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tfbn::export::describe::{describe, SafetensorsReport};
use tfbn::export::writer::{check_output, check_output_not_input};
use tfbn::export::{
    plan_all_variables, plan_layers, verify_file_with_progress, write_plan, DtypeCast,
    ExportOptions, Preset, Rename,
};

use super::{InputPath, Outcome};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    found: super::LayerArgs,
    /// Checkpoint prefix, `.index` file, checkpoint folder or SavedModel folder.
    path: InputPath,
    /// Output `.safetensors` file.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// Target naming and conventions: tf (TF names), pytorch, candle, burn.
    #[arg(long, default_value = "tf", value_parser = parse_preset)]
    preset: Preset,
    /// Export only layers whose TF name, object path or module path matches
    /// (`*` any run, `?` one character); repeatable or comma-separated.
    #[arg(long = "layers", value_name = "GLOB", value_delimiter = ',')]
    layers: Vec<String>,
    /// Rewrite a module path, or a prefix of one ending at a component
    /// boundary (empty TO strips it); repeatable, first match wins.
    #[arg(long, value_name = "FROM=TO", value_parser = parse_rename)]
    rename: Vec<Rename>,
    /// Write per-layer `scale` and `shift` (y = x·scale + shift) instead of
    /// the four variables, for inference-only consumers.
    #[arg(long)]
    fold: bool,
    /// Element type of floating-point tensors: keep, f32, f16, bf16, f64
    /// (rounded once, to nearest even).
    #[arg(long, default_value = "keep", value_parser = parse_dtype)]
    dtype: DtypeCast,
    /// Write every numeric variable verbatim under its checkpoint key.
    #[arg(long, conflicts_with_all = ["layers", "rename", "fold", "epsilon", "momentum", "axis", "fused", "variance", "hyper"])]
    all_variables: bool,
    /// Read the written file back and compare every tensor with the
    /// checkpoint bit for bit (after the cast); exit 1 on a mismatch.
    #[arg(long)]
    verify: bool,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
    /// Do not fdatasync the output before renaming it into place: about
    /// `cp` speed on a slow disk, but a power loss right after the export
    /// may leave an empty or partial file on some file systems.
    #[arg(long)]
    no_sync: bool,
    /// No progress bar, notes or summary line.
    #[arg(long, short = 'q')]
    quiet: bool,
}

fn parse_preset(s: &str) -> Result<Preset, String> {
    s.parse()
        .map_err(|_| format!("unknown preset {s:?} (tf, pytorch, candle, burn)"))
}

fn parse_dtype(s: &str) -> Result<DtypeCast, String> {
    s.parse()
        .map_err(|_| format!("unknown dtype {s:?} (keep, f32, f16, bf16, f64)"))
}

fn parse_rename(s: &str) -> Result<Rename, String> {
    let (from, to) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?}: expected FROM=TO"))?;
    if from.is_empty() {
        return Err(format!("{s:?}: FROM is empty"));
    }
    Ok(Rename {
        from: from.to_string(),
        to: to.to_string(),
    })
}

/// The progress bar on stderr (indicatif: bytes done, rate, ETA), shown
/// once a step has run for a second, redrawn at most ten times a second,
/// and cleared when the step ends; never drawn under `--quiet` or when
/// stderr is not a terminal.
struct Progress {
    enabled: bool,
    start: Instant,
    bar: Option<ProgressBar>,
}

/// The bar's look: label, bar, percent, bytes done of total, rate, ETA.
const BAR_TEMPLATE: &str = "{msg} [{bar:30}] {percent:>3}% {binary_bytes}/{binary_total_bytes} \
                            {binary_bytes_per_sec} ETA {eta}";

fn bar_style() -> ProgressStyle {
    ProgressStyle::with_template(BAR_TEMPLATE)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

impl Progress {
    fn new(enabled: bool) -> Progress {
        Progress {
            enabled,
            start: Instant::now(),
            bar: None,
        }
    }

    fn update(&mut self, label: &'static str, done: u64, total: u64) {
        if !self.enabled || self.start.elapsed() < Duration::from_secs(1) {
            return;
        }
        let bar = self.bar.get_or_insert_with(|| {
            let b =
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
            b.set_style(bar_style());
            b.set_message(label);
            b
        });
        bar.set_length(total);
        bar.set_position(done);
    }

    fn clear(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

pub fn run(args: Args) -> Result<Outcome> {
    let start = Instant::now();
    let mut opts = ExportOptions {
        force: args.force,
        dtype: args.dtype,
        preset: args.preset,
        layers: args.layers,
        rename: args.rename,
        fold: args.fold,
        declared: Default::default(),
        no_sync: args.no_sync,
    };
    if args.all_variables && opts.preset != Preset::Tf {
        bail!(
            "--preset applies to batch-norm layer exports; --all-variables writes checkpoint keys"
        );
    }
    // Fail before planning when the output is in the way: one of the
    // input's own files, with or without --force (checked first, so that
    // no message suggests a --force that cannot help); a folder, FIFO or
    // device; an existing file without --force.
    let opened = super::open_source(&args.path, &args.found)?;
    let source = opened.source;
    opts.declared = opened.declared;
    check_output_not_input(&args.output, &source.input_files())?;
    check_output(&args.output, opts.force)?;
    let plan = if args.all_variables {
        plan_all_variables(&source, &opts)?
    } else {
        plan_layers(&source, &opts)?
    };
    if !args.all_variables && plan.layers.is_empty() {
        bail!(
            "{}: no batch-norm layers found (use --all-variables to export every variable)",
            args.path.display()
        );
    }
    let show = !args.quiet && std::io::stderr().is_terminal();
    let mut bar = Progress::new(show);
    let summary = write_plan(
        &source,
        &plan,
        &args.output,
        opts.output_policy(),
        &mut |d, t| bar.update("exporting", d, t),
    );
    bar.clear();
    let summary = summary?;
    let mut verified = None;
    if args.verify {
        let mut bar = Progress::new(show);
        let report = verify_file_with_progress(&source, &plan, &args.output, &mut |d, t| {
            bar.update("verifying", d, t)
        });
        bar.clear();
        let report = report?;
        if !report.ok() {
            for m in &report.mismatches {
                eprintln!("tfbn: verify: {}: {m}", args.output.display());
            }
            eprintln!(
                "tfbn: verify failed: {} difference(s) in {}",
                report.mismatches.len(),
                args.output.display()
            );
            return Ok(Outcome::Failed);
        }
        verified = Some(report);
    }
    // Skipped model variables are always said (they are data the user may
    // have expected in the file); bookkeeping (the object graph, counters)
    // is one summary line.
    let role = |key: &str| source.variable(key).map(|v| v.role);
    let mut bookkeeping: Vec<&str> = Vec::new();
    for (key, why) in &summary.skipped {
        match role(key) {
            Some(tfbn::source::VariableRole::Model) => {
                eprintln!("skipped model variable {key}: {why}")
            }
            Some(tfbn::source::VariableRole::Bookkeeping) => bookkeeping.push(key),
            _ if !args.quiet => eprintln!("skipped {key}: {why}"),
            _ => {}
        }
    }
    if !args.quiet && !bookkeeping.is_empty() {
        eprintln!(
            "skipped {} bookkeeping string tensor(s) ({}): safetensors holds numbers only",
            bookkeeping.len(),
            bookkeeping.join(", ")
        );
    }
    if !args.quiet {
        super::print_notes(&summary.notes);
        let what = if args.all_variables {
            "all variables".to_string()
        } else {
            format!("{} layers, preset {}", summary.layers, opts.preset)
        };
        eprintln!(
            "wrote {}: {what}, {} tensors, {} bytes, {} skipped{}, in {:.2}s",
            args.output.display(),
            summary.tensors,
            summary.bytes,
            summary.skipped.len(),
            match &verified {
                Some(r) => format!(", verified {} tensors bit for bit", r.tensors),
                None => String::new(),
            },
            start.elapsed().as_secs_f64()
        );
    }
    Ok(Outcome::Ok)
}

/// `tfbn inspect FILE.safetensors [--json]`: an exported file's layers and
/// conventions (any safetensors file's tensors).
pub fn inspect_safetensors(path: &Path, json: bool) -> Result<Outcome> {
    let report = describe(path)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_report(&mut out, &report).map_err(|e| anyhow!(e))?;
    }
    Ok(Outcome::Ok)
}

fn print_report(out: &mut impl Write, r: &SafetensorsReport) -> std::io::Result<()> {
    let m = |k: &str| r.metadata.get(k).map(String::as_str).unwrap_or("-");
    writeln!(
        out,
        "{}: safetensors, {} tensors, {} bytes, format {}",
        r.path.display(),
        r.tensors.len(),
        r.bytes,
        m("format")
    )?;
    if !r.written_by_tfbn {
        writeln!(out, "not written by tfbn (no tfbn.* metadata)")?;
    } else {
        writeln!(
            out,
            "written by tfbn {} from {} ({} naming): mode {}, preset {}, dtype {}, fold {}",
            m("tfbn.version"),
            m("tfbn.source"),
            m("tfbn.naming_style"),
            m("tfbn.mode"),
            m("tfbn.preset"),
            m("tfbn.dtype"),
            if m("tfbn.fold") == "false" {
                "no"
            } else {
                "yes"
            }
        )?;
    }
    if !r.layers.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "  {:<32} {:>8} {:<10} {:<10} {:<6} {:<6} {:<11} {:<8} {:<14}",
            "module",
            "channels",
            "epsilon",
            "momentum",
            "torch",
            "axis",
            "api",
            "fused",
            "moving_var"
        )?;
        for l in &r.layers {
            let target = match l.fields.get("target_running_var") {
                Some(t) if t != l.get("moving_variance") => format!(" (target {t})"),
                _ => String::new(),
            };
            writeln!(
                out,
                "  {:<32} {:>8} {:<10} {:<10} {:<6} {:<6} {:<11} {:<8} {}{}",
                l.module,
                l.get("channels"),
                l.get("epsilon"),
                l.get("momentum_tf"),
                l.get("momentum_torch"),
                l.get("axis"),
                l.get("api"),
                l.get("fused"),
                l.get("moving_variance"),
                target
            )?;
            writeln!(out, "      tf name          {}", l.get("tf_name"))?;
            writeln!(
                out,
                "      sources          epsilon: {}; momentum: {}; moving_variance: {}",
                l.get("epsilon_source"),
                l.get("momentum_source"),
                l.get("moving_variance_source")
            )?;
            for f in [
                "assumed",
                "gamma",
                "beta",
                "renorm",
                "reshaped",
                "conflicts",
            ] {
                if let Some(v) = l.fields.get(f) {
                    if v != "stored" && v != "[]" {
                        writeln!(out, "      {f:<16} {v}")?;
                    }
                }
            }
            writeln!(out, "      tensors          {}", l.tensors.join(", "))?;
        }
    } else {
        writeln!(out)?;
        for t in &r.tensors {
            writeln!(out, "  {:<48} {:<5} {:?}", t.name, t.dtype, t.shape)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_template_parses_and_draws_bytes_rate_and_eta() {
        assert!(ProgressStyle::with_template(BAR_TEMPLATE).is_ok());
        let b = ProgressBar::with_draw_target(Some(3 << 30), ProgressDrawTarget::hidden());
        b.set_style(bar_style());
        b.set_message("exporting");
        b.set_position(1 << 30);
        assert_eq!(b.position(), 1 << 30);
        // indicatif formats the units itself (no hand-made `GiBiB` suffixes).
        assert!(BAR_TEMPLATE.contains("binary_bytes_per_sec") && BAR_TEMPLATE.contains("{eta}"));
    }
}
