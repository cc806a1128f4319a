//! Export targets: how each consumer names a batch-norm layer's tensors,
//! what it expects in the `format` metadata key, which tensors it needs, and
//! which conventions it assumes for the values it does not read from a file.
//!
//! | preset | tensors of layer `m` | `format` | running variance | momentum |
//! |---|---|---|---|---|
//! | `tf` | `m/gamma`, `m/beta`, `m/moving_mean`, `m/moving_variance` (+ renorm extras), as stored | `tf` | as TF stored it | TF: weight of the old value |
//! | `pytorch` | `m.weight`, `m.bias`, `m.running_mean`, `m.running_var`, `m.num_batches_tracked` | `pt` | Bessel-corrected | weight of the new value |
//! | `candle` | `m.weight`, `m.bias`, `m.running_mean`, `m.running_var` | `pt` | Bessel-corrected | weight of the new value |
//! | `burn` | `m.gamma`, `m.beta`, `m.running_mean`, `m.running_var` | `safetensors` | biased | weight of the new value |
//!
//! `format`: Hugging Face loaders check `pt` for PyTorch-layout files (candle
//! reads the same layout); burn's own `SafetensorsStore` writes
//! `safetensors`. The variance and momentum columns are the conventions the
//! target's *training* update uses; inference in all of them reads the
//! running variance as is (see the crate README, "Conventions").

use serde::Serialize;

use crate::hyper::VarianceConvention;
use crate::layers::BnRole;

/// A consumer of the exported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Preset {
    /// TensorFlow's own names and shapes (`<layer>/gamma` …), nothing added.
    #[default]
    Tf,
    /// `torch.nn.BatchNorm*d` state-dict names, with `num_batches_tracked`.
    Pytorch,
    /// `candle_nn::batch_norm` names (PyTorch's, without `num_batches_tracked`).
    Candle,
    /// `burn::nn::BatchNorm` field names.
    Burn,
}

/// What an exported tensor of a layer holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// A layer variable.
    Var(BnRole),
    /// PyTorch's `num_batches_tracked` (0-d int64).
    NumBatchesTracked,
    /// `--fold`: per-channel multiplier.
    FoldScale,
    /// `--fold`: per-channel offset.
    FoldShift,
}

impl Preset {
    /// Every preset, in [`Preset::label`] order.
    pub const ALL: [Preset; 4] = [Preset::Tf, Preset::Pytorch, Preset::Candle, Preset::Burn];

    /// Parses `tf`, `pytorch` (or `torch`), `candle` or `burn`.
    fn from_label(s: &str) -> Option<Preset> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tf" | "tensorflow" => Some(Preset::Tf),
            "pytorch" | "torch" => Some(Preset::Pytorch),
            "candle" => Some(Preset::Candle),
            "burn" => Some(Preset::Burn),
            _ => None,
        }
    }

    /// `"tf"`, `"pytorch"`, `"candle"` or `"burn"`.
    pub fn label(self) -> &'static str {
        match self {
            Preset::Tf => "tf",
            Preset::Pytorch => "pytorch",
            Preset::Candle => "candle",
            Preset::Burn => "burn",
        }
    }

    /// The value of the `format` metadata key the target's loaders expect.
    pub fn format(self) -> &'static str {
        match self {
            Preset::Tf => "tf",
            Preset::Pytorch | Preset::Candle => "pt",
            Preset::Burn => "safetensors",
        }
    }

    /// The separator between module path components and before the tensor
    /// leaf: `/` for TF, `.` for the module-path presets.
    pub fn separator(self) -> char {
        match self {
            Preset::Tf => '/',
            _ => '.',
        }
    }

    /// A TF layer name as this preset's module path (`conv1/BatchNorm` →
    /// `conv1.BatchNorm` for the dotted presets).
    pub fn module_path(self, tf_name: &str) -> String {
        match self {
            Preset::Tf => tf_name.to_string(),
            _ => tf_name.replace('/', "."),
        }
    }

    /// The leaf name of a slot, or `None` when the preset does not write it.
    pub fn leaf(self, slot: Slot) -> Option<&'static str> {
        use BnRole::*;
        Some(match (self, slot) {
            (_, Slot::FoldScale) => "scale",
            (_, Slot::FoldShift) => "shift",
            (Preset::Tf, Slot::Var(role)) => role.tf_name(),
            (Preset::Tf, Slot::NumBatchesTracked) => return None,
            (Preset::Pytorch, Slot::NumBatchesTracked) => "num_batches_tracked",
            (_, Slot::NumBatchesTracked) => return None,
            (Preset::Pytorch | Preset::Candle, Slot::Var(Gamma)) => "weight",
            (Preset::Pytorch | Preset::Candle, Slot::Var(Beta)) => "bias",
            (Preset::Burn, Slot::Var(Gamma)) => "gamma",
            (Preset::Burn, Slot::Var(Beta)) => "beta",
            (_, Slot::Var(MovingMean)) => "running_mean",
            (_, Slot::Var(MovingVariance)) => "running_var",
            (_, Slot::Var(MovingStddev | RenormMean | RenormStddev)) => return None,
        })
    }

    /// The tensor name of `slot` in module `module`.
    pub fn tensor_name(self, module: &str, slot: Slot) -> Option<String> {
        self.leaf(slot)
            .map(|leaf| format!("{module}{}{leaf}", self.separator()))
    }

    /// The slots written for a layer, in file order.
    pub fn slots(self, fold: bool) -> Vec<Slot> {
        use BnRole::*;
        if fold {
            return vec![Slot::FoldScale, Slot::FoldShift];
        }
        let mut s: Vec<Slot> = [Gamma, Beta, MovingMean, MovingVariance]
            .into_iter()
            .map(Slot::Var)
            .collect();
        match self {
            Preset::Tf => s.extend([MovingStddev, RenormMean, RenormStddev].map(Slot::Var)),
            Preset::Pytorch => s.push(Slot::NumBatchesTracked),
            Preset::Candle | Preset::Burn => {}
        }
        s
    }

    /// True when the target's layer always has γ and β (`affine=True`), so a
    /// layer without them gets ones / zeros. TF names are written as stored.
    pub fn needs_affine(self) -> bool {
        !matches!(self, Preset::Tf)
    }

    /// True when tensors are written with the channel count as their only
    /// dimension (`[C]`), as the module-path targets require; `tf` keeps the
    /// stored shape (e.g. `[1, 1, C]` for virtual-batch layers).
    pub fn flattens_shapes(self) -> bool {
        !matches!(self, Preset::Tf)
    }

    /// The running-variance convention the target's training update uses,
    /// or `None` for `tf` (the file keeps TF's own).
    pub fn running_var_convention(self) -> Option<VarianceConvention> {
        match self {
            Preset::Tf => None,
            // torch.nn.BatchNorm and candle_nn::BatchNorm::forward_train add
            // the unbiased batch variance (n / (n − 1)) to running_var.
            Preset::Pytorch | Preset::Candle => Some(VarianceConvention::Bessel),
            // burn::nn::BatchNorm updates running_var with the biased one.
            Preset::Burn => Some(VarianceConvention::Biased),
        }
    }
}

crate::label::display_label!(Preset);

crate::label::from_label!(Preset, "preset");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_each_target() {
        let m = Preset::Candle.module_path("conv1/BatchNorm");
        assert_eq!(m, "conv1.BatchNorm");
        assert_eq!(
            Preset::Candle
                .tensor_name(&m, Slot::Var(BnRole::Gamma))
                .as_deref(),
            Some("conv1.BatchNorm.weight")
        );
        assert_eq!(
            Preset::Burn
                .tensor_name("bn", Slot::Var(BnRole::Beta))
                .as_deref(),
            Some("bn.beta")
        );
        assert_eq!(
            Preset::Tf
                .tensor_name("conv1/BatchNorm", Slot::Var(BnRole::MovingVariance))
                .as_deref(),
            Some("conv1/BatchNorm/moving_variance")
        );
        assert_eq!(
            Preset::Candle.tensor_name("bn", Slot::NumBatchesTracked),
            None
        );
        assert!(Preset::Pytorch
            .slots(false)
            .contains(&Slot::NumBatchesTracked));
        for p in Preset::ALL {
            assert_eq!(Preset::from_label(p.label()), Some(p));
        }
    }
}
