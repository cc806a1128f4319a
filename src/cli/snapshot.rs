//! `tfbn snapshot PATH -o FILE` writes the numeric snapshot of a
//! checkpoint's batch-norm layers on seeded inputs; `tfbn snapshot --check
//! FILE PATH` recomputes and compares under a tolerance.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use tfbn::snapshot::{
    drifts, snapshot_layers, LayerSnapshotPlan, Snapshot, SnapshotOptions, Tolerance,
};
use tfbn::testing::prepare::Overrides;

use super::{InputPath, Outcome};

/// Which modes to snapshot.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modes {
    /// Inference only.
    Inference,
    /// Training only.
    Training,
    /// Both.
    Both,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    found: super::LayerArgs,
    /// Checkpoint prefix, `.index` file, checkpoint folder or SavedModel folder.
    path: InputPath,
    /// Write the snapshot here (written atomically).
    #[arg(short = 'o', long = "output", conflicts_with = "check")]
    output: Option<PathBuf>,
    /// Compare against this snapshot instead of writing one.
    #[arg(long)]
    check: Option<PathBuf>,
    /// Tolerance for --check: exact, ulp:N, ulp-of-max:N, abs:X or rel:X.
    #[arg(long, default_value = "exact")]
    tolerance: String,
    /// Only these layers (repeatable).
    #[arg(long = "layer")]
    layers: Vec<String>,
    /// Modes to run.
    #[arg(long, value_enum, default_value = "both")]
    mode: Modes,
    /// Input seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Batch size of the seeded input.
    #[arg(long, default_value_t = 4)]
    batch: usize,
    /// Replace an existing output file.
    #[arg(long)]
    force: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    let tolerance = Tolerance::parse(&args.tolerance)?;
    if args.output.is_none() && args.check.is_none() {
        bail!("give -o FILE to write a snapshot or --check FILE to compare with one");
    }
    // Read the old snapshot first: a bad file is bad input (exit 2) before
    // any work.
    let old = match &args.check {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("{}: cannot read the snapshot", f.display()))?;
            Some(Snapshot::parse(&text).with_context(|| format!("{}", f.display()))?)
        }
        None => None,
    };
    let opened = super::open_source(&args.path, &args.found)?;
    let source = opened.source;
    let plan = LayerSnapshotPlan {
        layers: args.layers.clone(),
        inference: args.mode != Modes::Training,
        training: args.mode != Modes::Inference,
        seed: args.seed,
        batch: args.batch,
        ..LayerSnapshotPlan::default()
    };
    let opts = SnapshotOptions::default();
    let overrides = Overrides {
        declared: opened.declared,
        api: None,
    };
    let snap = snapshot_layers(&source, &plan, &overrides, &opts)?;
    for l in snap.layers.iter().filter(|l| !l.assumed.is_empty()) {
        eprintln!(
            "note: {}: assumed from TF's defaults: {} (recorded in the snapshot header)",
            l.name,
            l.assumed.join(", ")
        );
    }
    if let Some(out) = &args.output {
        let text = snap.to_text(&opts);
        tfbn::export::writer::write_atomic(
            out,
            tfbn::export::writer::OutputPolicy {
                force: args.force,
                sync: true,
            },
            |w| {
                use std::io::Write;
                w.write_all(text.as_bytes())?;
                Ok(())
            },
        )?;
        eprintln!("wrote {} ({} arrays)", out.display(), snap.arrays.len());
        return Ok(Outcome::Ok);
    }
    let old = old.unwrap_or_default();
    let drifts = drifts(&old, &snap, tolerance);
    if drifts.is_empty() {
        println!(
            "{} arrays within {tolerance} of {}",
            snap.arrays.len(),
            args.check
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        Ok(Outcome::Ok)
    } else {
        println!("{} drift(s) beyond {tolerance}:", drifts.len());
        for d in &drifts {
            println!("  {d}");
        }
        Ok(Outcome::Failed)
    }
}
