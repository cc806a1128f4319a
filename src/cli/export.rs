//! `tfbn export PATH --all-variables -o OUT.safetensors [--force]`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use tfbn::export::{export_all_variables, ExportOptions};
use tfbn::source::Source;

use super::{InputPath, Outcome};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint prefix, `.index` file, checkpoint folder or SavedModel folder.
    path: InputPath,
    /// Output `.safetensors` file.
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// Write every numeric variable verbatim under its checkpoint key.
    #[arg(long)]
    all_variables: bool,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
    /// No progress bar or summary line.
    #[arg(long, short = 'q')]
    quiet: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    if !args.all_variables {
        bail!("only --all-variables export is available in this version");
    }
    if !args.force && args.output.exists() {
        return Err(tfbn::Error::OutputExists { path: args.output }.into());
    }
    let start = Instant::now();
    let source = Source::open(&args.path)?;
    let show_progress = !args.quiet && std::io::stderr().is_terminal();
    let mut last_draw = Instant::now();
    let mut progress = |done: u64, total: u64| {
        if show_progress
            && start.elapsed().as_secs_f64() > 1.0
            && last_draw.elapsed().as_millis() > 100
        {
            last_draw = Instant::now();
            let pct = if total == 0 { 100 } else { done * 100 / total };
            let _ = write!(std::io::stderr(), "\rexporting {pct:>3}% ({done} / {total} bytes)");
        }
    };
    let summary = export_all_variables(
        &source,
        &args.output,
        &ExportOptions { force: args.force },
        &mut progress,
    )?;
    if show_progress && start.elapsed().as_secs_f64() > 1.0 {
        let _ = write!(std::io::stderr(), "\r\x1b[K");
    }
    if !args.quiet {
        for (key, why) in &summary.skipped {
            eprintln!("skipped {key}: {why}");
        }
        eprintln!(
            "wrote {}: {} tensors, {} bytes, {} skipped, in {:.2}s",
            args.output.display(),
            summary.tensors,
            summary.bytes,
            summary.skipped.len(),
            start.elapsed().as_secs_f64()
        );
    }
    Ok(Outcome::Ok)
}
