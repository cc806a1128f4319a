//! From a checkpoint layer to a runnable native layer: reads the layer's
//! variables and builds the [`BnConfig`] from the recovered
//! hyper-parameters, the API the checkpoint's style implies, and the
//! caller's overrides. `apply`, `verify`, `snapshot` and `export --fold` all
//! start here, so they agree on what a layer is.

use crate::bn::{BnApi, BnConfig, BnParams, RenormConfig, RenormState};
use crate::declared::Declared;
use crate::error::{Error, Result};
use crate::hyper::{default_api, Assumed, HyperSource, LayerHyper, Sourced, VarianceConvention};
use crate::layers::{BnLayer, BnRole};
use crate::source::Source;

/// What the user gives; each declared value replaces what the files said
/// (and the replacement is noted).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Declared settings (`--epsilon`, `--momentum`, `--axis`, `--fused`,
    /// `--variance`, `--hyper`), per layer glob.
    pub declared: Declared,
    /// `--api`.
    pub api: Option<BnApi>,
}

/// A layer ready to run natively.
#[derive(Debug, Clone)]
pub struct PreparedLayer {
    /// The layer as discovered.
    pub layer: BnLayer,
    /// Its hyper-parameters after overrides.
    pub hyper: LayerHyper,
    /// The API whose semantics apply.
    pub api: BnApi,
    /// Where the API choice came from.
    pub api_source: &'static str,
    /// The native layer's configuration.
    pub config: BnConfig,
    /// The variables as f32 (f16/bf16 widen exactly).
    pub params: BnParams<f32>,
    /// The settings that rest on TF's defaults (`crate::hyper::assumed`):
    /// what a verdict on this layer cannot vouch for.
    pub assumed: Vec<Assumed>,
    /// What the stored moving variance holds, and why.
    pub moving_variance: Sourced<VarianceConvention>,
    /// Notes for the report (overrides, assumptions).
    pub notes: Vec<String>,
}

impl PreparedLayer {
    /// The settings the layer runs with and where each came from:
    /// `epsilon V (source); momentum V (source); axis V (source); fused
    /// true|false|auto (source); moving_variance biased|bessel (source); api
    /// NAME (source)` (a snapshot's header records it).
    pub fn settings_line(&self) -> String {
        let h = &self.hyper;
        let v = &self.moving_variance;
        format!(
            "epsilon {} ({}); momentum {} ({}); axis {} ({}); fused {} ({}); moving_variance {} ({}); api {} ({})",
            h.epsilon.value,
            h.epsilon.source,
            h.momentum.value,
            h.momentum.source,
            h.axis.value,
            h.axis.source,
            crate::declared::fused_label(h.fused.value),
            h.fused.source,
            match v.value {
                VarianceConvention::Biased => "biased",
                VarianceConvention::Bessel => "bessel",
            },
            v.source,
            self.api,
            self.api_source
        )
    }

    /// The assumed settings as labels (`epsilon`, `momentum`, …).
    pub fn assumed_labels(&self) -> Vec<&'static str> {
        self.assumed.iter().map(|a| a.label()).collect()
    }
}

fn read_f32(source: &Source, layer: &BnLayer, role: BnRole) -> Result<Option<Vec<f32>>> {
    let Some(v) = layer.var(role) else {
        return Ok(None);
    };
    let t = source.read(&v.key)?;
    let values = t.to_f32_vec().ok_or_else(|| Error::TensorMismatch {
        key: v.key.clone(),
        what: format!(
            "{} is {}; the native layer runs float32, float16 and bfloat16 variables",
            role.tf_name(),
            t.dtype
        ),
    })?;
    if values.len() as u64 != layer.channels {
        return Err(Error::TensorMismatch {
            key: v.key.clone(),
            what: format!(
                "{} has {} elements but the layer has {} channels",
                role.tf_name(),
                values.len(),
                layer.channels
            ),
        });
    }
    Ok(Some(values))
}

/// Reads `layer`'s variables and builds its configuration.
pub fn prepare_layer(
    source: &Source,
    layer: &BnLayer,
    hyper: &LayerHyper,
    overrides: &Overrides,
) -> Result<PreparedLayer> {
    let mut hyper = hyper.clone();
    let mut notes = overrides.declared.apply(layer, &mut hyper);
    let (api, api_source) = match overrides.api {
        Some(api) => (api, "flag"),
        None => match layer.api {
            Some(api) => (api, "graph op"),
            None => (default_api(source.style()), "naming style"),
        },
    };

    let missing = |role: BnRole| Error::TensorMismatch {
        key: layer.name.clone(),
        what: format!("layer has no {}", role.tf_name()),
    };
    let moving_mean =
        read_f32(source, layer, BnRole::MovingMean)?.ok_or_else(|| missing(BnRole::MovingMean))?;
    let moving_variance = read_f32(source, layer, BnRole::MovingVariance)?
        .ok_or_else(|| missing(BnRole::MovingVariance))?;
    let gamma = read_f32(source, layer, BnRole::Gamma)?;
    let beta = read_f32(source, layer, BnRole::Beta)?;
    let renorm = if layer.is_renorm() {
        let get = |r: BnRole| -> Result<Vec<f32>> {
            read_f32(source, layer, r)?.ok_or_else(|| missing(r))
        };
        Some(RenormState {
            moving_stddev: get(BnRole::MovingStddev)?,
            renorm_mean: get(BnRole::RenormMean)?,
            renorm_stddev: get(BnRole::RenormStddev)?,
        })
    } else {
        None
    };

    // A fused op in a graph shows that TF ran the fused kernel, which
    // `fused=True` and the default `fused=None` both do where the input
    // allows it; the graph cannot tell them apart. So TF's own rule decides
    // (fused where the rank and axis allow, non-fused otherwise) instead of
    // refusing inputs the layer would have run non-fused.
    let fused = match (&hyper.fused.source, hyper.fused.value) {
        (HyperSource::Graph { node, .. }, Some(true)) => {
            notes.push(format!(
                "fused: the graph runs a fused op ({node}), which fused=True and TF's default \
                 fused=None both do; TF's rule decides (fused where the input allows it)"
            ));
            None
        }
        (_, v) => v,
    };

    // center/scale follow the variables that exist: Keras creates beta only
    // with center=True and gamma only with scale=True.
    let config = BnConfig {
        epsilon: hyper.epsilon.value,
        momentum: hyper.momentum.value,
        axis: hyper.axis.value as isize,
        center: beta.is_some(),
        scale: gamma.is_some(),
        fused,
        renorm: renorm.as_ref().map(|_| RenormConfig {
            rmax: hyper.renorm_clipping.value.rmax,
            rmin: hyper.renorm_clipping.value.rmin,
            dmax: hyper.renorm_clipping.value.dmax,
            renorm_momentum: hyper.renorm_momentum.value,
        }),
        virtual_batch_size: hyper
            .virtual_batch_size
            .value
            .and_then(|v| usize::try_from(v).ok()),
        intra_op_threads: None,
        api,
        // Only hand-written `tf.nn` layers take their update from the graph.
        nn_update: hyper.nn_update.value.filter(|_| api == BnApi::Nn),
        inference_rewritten: hyper.inference_rewritten.value,
    };
    let assumed = crate::hyper::assumed(&hyper, api);
    let variance = overrides
        .declared
        .variance(layer)
        .unwrap_or_else(|| crate::hyper::moving_variance_of(api, &hyper));
    Ok(PreparedLayer {
        layer: layer.clone(),
        hyper,
        api,
        api_source,
        assumed,
        moving_variance: variance,
        config,
        params: BnParams {
            gamma,
            beta,
            moving_mean,
            moving_variance,
            renorm,
        },
        notes,
    })
}
