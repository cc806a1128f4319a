//! `tfbn apply PATH --layer NAME --input X.npy --mode inference|training -o DIR`:
//! runs one layer of a checkpoint natively and writes its outputs as `.npy`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use ndarray::ArrayD;
use tfbn::bn::{self, BnApi};
use tfbn::export::writer::check_output_not_input;
use tfbn::testing::npy::{read_npy, write_npy, NpyArray};
use tfbn::testing::prepare::{prepare_layer, Overrides};
use tfbn::FloatArray;

use super::{InputPath, Outcome};

/// Which mode to run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Normalize with the moving statistics.
    Inference,
    /// Normalize with the batch statistics and update the moving ones.
    Training,
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    found: super::LayerArgs,
    /// Checkpoint prefix, `.index` file, checkpoint folder or SavedModel folder.
    path: InputPath,
    /// The layer (name or object path, as `tfbn inspect` lists it).
    #[arg(long)]
    layer: String,
    /// Input `.npy` (float32, float64 or float16; bfloat16 as uint16 bits
    /// with --bf16-bits).
    #[arg(long)]
    input: PathBuf,
    /// Read a uint16 input as bfloat16 bit patterns (NumPy has no bfloat16).
    #[arg(long)]
    bf16_bits: bool,
    /// Inference (moving statistics) or training (batch statistics).
    #[arg(long, value_enum, default_value = "inference")]
    mode: Mode,
    /// TF API whose semantics to reproduce: fused, tf1-layers, tf-keras,
    /// keras3, nn. Default: what the checkpoint's naming style implies.
    #[arg(long)]
    api: Option<String>,
    /// Output folder (created if missing; a folder, unlike export's file).
    #[arg(short = 'o', long = "output")]
    output: PathBuf,
    /// Replace output files that already exist in the folder (as export's
    /// --force; without it an existing output is an error and nothing is
    /// written).
    #[arg(long)]
    force: bool,
}

/// Every file `apply` may write into its output folder.
const OUTPUT_NAMES: [&str; 8] = [
    "y.npy",
    "batch_mean.npy",
    "batch_variance.npy",
    "moving_mean.npy",
    "moving_variance.npy",
    "moving_stddev.npy",
    "renorm_mean.npy",
    "renorm_stddev.npy",
];

fn to_input(a: NpyArray, bf16_bits: bool, path: &std::path::Path) -> Result<FloatArray> {
    Ok(match a {
        NpyArray::F32(a) => FloatArray::F32(a),
        NpyArray::F64(a) => FloatArray::F64(a),
        NpyArray::F16(a) => FloatArray::F16(a),
        NpyArray::U16(a) if bf16_bits => FloatArray::BF16(a.mapv(half::bf16::from_bits)),
        _ => bail!(
            "{}: input must be float32, float64 or float16 (or uint16 bfloat16 bits with --bf16-bits)",
            path.display()
        ),
    })
}

fn to_npy(y: &FloatArray) -> NpyArray {
    match y {
        FloatArray::F32(a) => NpyArray::F32(a.clone()),
        FloatArray::F64(a) => NpyArray::F64(a.clone()),
        FloatArray::F16(a) => NpyArray::F16(a.clone()),
        FloatArray::BF16(a) => NpyArray::U16(a.mapv(|v| v.to_bits())),
    }
}

fn vec_npy(v: &[f32]) -> NpyArray {
    NpyArray::F32(ArrayD::from_shape_vec(vec![v.len()], v.to_vec()).unwrap_or_default())
}

pub fn run(args: Args) -> Result<Outcome> {
    let api = match &args.api {
        Some(s) => Some(s.parse::<BnApi>().ok().with_context(|| {
            format!("--api {s}: expected fused, tf1-layers, tf-keras, keras3 or nn")
        })?),
        None => None,
    };
    let opened = super::open_source(&args.path, &args.found)?;
    let source = opened.source;
    let layers = tfbn::testing::find::discover(&source);
    opened.declared.check(&layers)?;
    let layer = tfbn::testing::layers::find(&layers, &args.layer)
        .ok_or_else(|| tfbn::Error::LayerNotFound {
            name: args.layer.clone(),
            known: layers
                .iter()
                .map(|l| l.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        })
        .with_context(|| args.path.display().to_string())?;
    let hyper = tfbn::testing::hyper::recover(&source, std::slice::from_ref(layer))
        .with_context(|| format!("{}: layer {}", args.path.display(), layer.name))?;
    let hyper = hyper
        .into_iter()
        .next()
        .context("no hyper-parameters recovered")?;
    let overrides = Overrides {
        declared: opened.declared,
        api,
    };
    // Every error from here on names the checkpoint and the layer (and,
    // once it is read, the input).
    let at = format!("{}: layer {}", args.path.display(), layer.name);
    let prepared = prepare_layer(&source, layer, &hyper, &overrides).context(at.clone())?;
    let x = to_input(read_npy(&args.input)?, args.bf16_bits, &args.input)?;
    let at_input = format!("{at}: input {}", args.input.display());

    // -o is a folder; outputs never replace the input or a checkpoint file.
    match std::fs::metadata(&args.output) {
        Ok(m) if !m.is_dir() => bail!(
            "{}: is {}; -o names the folder the outputs are written to",
            args.output.display(),
            tfbn::testing::fsx::kind_of(m.file_type())
        ),
        _ => {}
    }
    let mut inputs = source.input_files();
    inputs.push(args.input.clone());
    for name in OUTPUT_NAMES {
        check_output_not_input(&args.output.join(name), &inputs)?;
    }
    // Export's no-clobber rule, checked for every file this mode may write
    // before anything is written.
    let may_write: &[&str] = match args.mode {
        Mode::Inference => &OUTPUT_NAMES[..1],
        Mode::Training => &OUTPUT_NAMES,
    };
    if !args.force {
        if let Some(taken) = may_write
            .iter()
            .map(|n| args.output.join(n))
            .find(|p| p.symlink_metadata().is_ok())
        {
            return Err(tfbn::Error::OutputExists { path: taken }.into());
        }
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("{}: cannot create the output folder", args.output.display()))?;
    let out = |name: &str| args.output.join(name);
    match args.mode {
        Mode::Inference => {
            let r = bn::inference(&prepared.config, &prepared.params, &x).context(at_input)?;
            write_npy(out("y.npy"), &to_npy(&r.y))?;
        }
        Mode::Training => {
            let r = bn::training(&prepared.config, &prepared.params, &x).context(at_input)?;
            // Compute everything first, then write, so an error leaves nothing.
            let mut files = vec![("y.npy", to_npy(&r.y))];
            if let Some(m) = &r.batch_mean {
                files.push(("batch_mean.npy", vec_npy(m)));
            }
            if let Some(v) = &r.batch_variance {
                files.push(("batch_variance.npy", vec_npy(v)));
            }
            files.push(("moving_mean.npy", vec_npy(&r.moving_mean)));
            files.push(("moving_variance.npy", vec_npy(&r.moving_variance)));
            if let Some(rn) = &r.renorm {
                files.push(("moving_stddev.npy", vec_npy(&rn.moving_stddev)));
                files.push(("renorm_mean.npy", vec_npy(&rn.renorm_mean)));
                files.push(("renorm_stddev.npy", vec_npy(&rn.renorm_stddev)));
            }
            for (name, a) in &files {
                write_npy(out(name), a)?;
            }
        }
    }
    super::print_notes(&prepared.notes);
    if !prepared.assumed.is_empty() {
        eprintln!(
            "note: {}: assumed from TF's defaults: {}; {}",
            prepared.layer.name,
            tfbn::testing::hyper::Assumed::join(&prepared.assumed),
            super::declare_hint(&prepared.layer.name, &prepared.assumed)
        );
    }
    eprintln!(
        "{}: {} layer {} ({} channels, epsilon {}, momentum {}) → {}",
        args.path.display(),
        prepared.api,
        prepared.layer.name,
        prepared.layer.channels,
        prepared.config.epsilon,
        prepared.config.momentum,
        args.output.display()
    );
    eprintln!("settings: {}", prepared.settings_line());
    Ok(Outcome::Ok)
}
