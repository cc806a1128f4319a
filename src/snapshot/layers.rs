//! Snapshots of whole batch-norm layers: seeded inputs, each layer run in
//! the chosen modes, the outputs recorded with the settings behind them.

use super::*;
use crate::error::{Error, Result};

/// A seeded, reproducible input: normal values (mean 0.5, sd 2) plus a
/// per-channel offset, so every channel has its own statistics. Same seed,
/// same shape → same bits on every machine (SplitMix64 + Box–Muller in f64,
/// rounded once to f32).
pub fn seeded_input(shape: &[usize], channel_axis: usize, seed: u64) -> ndarray::ArrayD<f32> {
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let inner: usize = shape
        .iter()
        .skip(channel_axis + 1)
        .product::<usize>()
        .max(1);
    let c = shape.get(channel_axis).copied().unwrap_or(1).max(1);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|i| {
            let u1 = ((next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            let u2 = (next() >> 11) as f64 / (1u64 << 53) as f64;
            let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
            let ch = (i / inner) % c;
            (0.5 + 2.0 * z + 0.25 * ch as f64) as f32
        })
        .collect();
    ndarray::ArrayD::from_shape_vec(shape.to_vec(), values)
        .unwrap_or_else(|_| ndarray::ArrayD::zeros(vec![0]))
}

/// What [`snapshot_layers`] runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerSnapshotPlan {
    /// Layer names (as `crate::find::discover` names them); empty = all.
    pub layers: Vec<String>,
    /// Run inference.
    pub inference: bool,
    /// Run training.
    pub training: bool,
    /// Input seed.
    pub seed: u64,
    /// Batch size.
    pub batch: usize,
    /// Spatial size (H, W) of the 4-D input.
    pub spatial: (usize, usize),
}

impl Default for LayerSnapshotPlan {
    fn default() -> Self {
        LayerSnapshotPlan {
            layers: Vec::new(),
            inference: true,
            training: true,
            seed: 0,
            batch: 4,
            spatial: (5, 5),
        }
    }
}

fn push_input(
    snap: &mut Snapshot,
    name: &str,
    y: &crate::dtype::FloatArray,
    axis: usize,
    opts: &SnapshotOptions,
) -> Result<()> {
    use crate::dtype::FloatArray;
    let dtype = match y {
        FloatArray::F32(_) => ValueType::F32,
        FloatArray::F64(_) => ValueType::F64,
        FloatArray::F16(_) => ValueType::F16,
        FloatArray::BF16(_) => ValueType::BF16,
    };
    snap.push(ArraySnapshot::new(
        name,
        dtype,
        y.shape(),
        axis,
        &y.to_f64_vec(),
        opts,
    )?);
    Ok(())
}

fn push_vec(snap: &mut Snapshot, name: &str, v: &[f32], opts: &SnapshotOptions) -> Result<()> {
    let values: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    snap.push(ArraySnapshot::new(
        name,
        ValueType::F32,
        &[v.len()],
        0,
        &values,
        opts,
    )?);
    Ok(())
}

/// Runs a checkpoint's batch-norm layers natively on seeded inputs and
/// snapshots their outputs (y; in training also the batch and moving
/// statistics).
pub fn snapshot_layers(
    source: &crate::source::Source,
    plan: &LayerSnapshotPlan,
    overrides: &crate::prepare::Overrides,
    opts: &SnapshotOptions,
) -> Result<Snapshot> {
    let layers = crate::find::discover(source);
    overrides.declared.check(&layers)?;
    let hypers = crate::hyper::recover(source, &layers)?;
    for want in &plan.layers {
        if crate::layers::find(&layers, want).is_none() {
            return Err(Error::LayerNotFound {
                name: want.clone(),
                known: layers
                    .iter()
                    .map(|l| l.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
    }
    let mut snap = Snapshot::default();
    for (layer, hyper) in layers.iter().zip(&hypers) {
        if !plan.layers.is_empty()
            && !plan
                .layers
                .iter()
                .any(|n| crate::layers::find(&layers, n).is_some_and(|l| l.name == layer.name))
        {
            continue;
        }
        let p = crate::prepare::prepare_layer(source, layer, hyper, overrides)?;
        snap.layers.push(SnapshotLayer {
            name: layer.name.clone(),
            settings: p.settings_line(),
            assumed: p.assumed_labels().into_iter().map(String::from).collect(),
        });
        let c = layer.channels as usize;
        let axis = p.config.resolved_axis(4).unwrap_or(3);
        let (h, w) = plan.spatial;
        let mut shape = vec![plan.batch, h, w];
        shape.insert(axis.min(3), c);
        let shape: Vec<usize> = shape.into_iter().take(4).collect();
        let x = crate::dtype::FloatArray::F32(seeded_input(&shape, axis, plan.seed));
        if plan.inference {
            let r = crate::bn::inference(&p.config, &p.params, &x)?;
            push_input(
                &mut snap,
                &format!("{}/inference/y", layer.name),
                &r.y,
                axis,
                opts,
            )?;
        }
        if plan.training {
            let r = crate::bn::training(&p.config, &p.params, &x)?;
            let base = format!("{}/training", layer.name);
            push_input(&mut snap, &format!("{base}/y"), &r.y, axis, opts)?;
            if let Some(m) = &r.batch_mean {
                push_vec(&mut snap, &format!("{base}/batch_mean"), m, opts)?;
            }
            if let Some(v) = &r.batch_variance {
                push_vec(&mut snap, &format!("{base}/batch_variance"), v, opts)?;
            }
            push_vec(
                &mut snap,
                &format!("{base}/moving_mean"),
                &r.moving_mean,
                opts,
            )?;
            push_vec(
                &mut snap,
                &format!("{base}/moving_variance"),
                &r.moving_variance,
                opts,
            )?;
        }
    }
    Ok(snap)
}
