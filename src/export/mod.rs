//! Writing batch-norm layers (or every variable) to safetensors files.
//!
//! Two modes, both planned first ([`plan_layers`], [`plan_all_variables`]:
//! names, dtypes, shapes, where each tensor's bytes come from, metadata),
//! then streamed to disk ([`write_plan`]) and optionally read back
//! ([`verify_file`]):
//!
//! * **layers** (default): the batch-norm layers `crate::layers` finds,
//!   named for a [`Preset`] (`tf`, `pytorch`, `candle`, `burn`), with each
//!   layer's ε, momentum (both conventions), axis, TF API and the convention
//!   of its stored moving variance in the metadata ([`meta`]), each with
//!   where it came from. `--fold` writes `scale`/`shift` instead ([`fold`]).
//! * **all variables**: every numeric variable verbatim under its checkpoint
//!   key; strings (and dtypes safetensors cannot hold) are skipped and
//!   listed.
//!
//! Values are never changed except by an explicit `--dtype` cast (rounded
//! once, to nearest even) or `--fold`. In particular the moving variance is
//! written as stored and its convention declared, not converted: the
//! checkpoint does not hold the batch size a biased ↔ Bessel conversion
//! needs, and every consumer's *inference* reads the running variance as is,
//! so converting would change the outputs.
//!
//! Output is deterministic (the header is built from sorted maps) and
//! atomic (a sibling temp file renamed into place; see [`writer`]). Peak
//! memory stays near one tensor: data is borrowed from the checkpoint's
//! memory map, copied file to file inside the kernel where possible, and
//! its pages are released once written ([`mapped`]).

pub mod cast;
pub mod describe;
pub mod fold;
pub mod mapped;
pub mod meta;
pub mod plan;
pub mod preset;
pub mod verify;
pub mod writer;

use std::path::Path;

pub use cast::DtypeCast;
pub use plan::{plan_all_variables, plan_layers, ExportPlan, Rename};
pub use preset::Preset;
pub use verify::{verify_file, verify_file_with_progress, VerifyReport};

use crate::error::Result;
use crate::source::Source;

/// Options of an export. `Default` is TF's names, stored dtypes, no
/// folding, every layer, no overrides, and no replacing of existing files.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Replace an existing output file.
    pub force: bool,
    /// Element type of floating-point tensors. Default: as stored.
    pub dtype: DtypeCast,
    /// Naming and conventions of the target (layer mode only). Default `tf`.
    pub preset: Preset,
    /// Globs selecting layers by TF name, object path or module path
    /// (layer mode only). Empty: every layer.
    pub layers: Vec<String>,
    /// Module path rewrites, first match wins (layer mode only).
    pub rename: Vec<Rename>,
    /// Write `scale`/`shift` per layer instead of the four variables
    /// (layer mode only).
    pub fold: bool,
    /// Declared hyper-parameters, marked `flag` or `sidecar` in the
    /// metadata (layer mode only).
    pub declared: crate::declared::Declared,
    /// Skip the `fdatasync` before the rename ([`writer::OutputPolicy`]).
    pub no_sync: bool,
}

impl ExportOptions {
    /// How the output file is put in place.
    pub fn output_policy(&self) -> writer::OutputPolicy {
        writer::OutputPolicy {
            force: self.force,
            sync: !self.no_sync,
        }
    }

    /// True when an option that only layer exports understand is set.
    pub fn has_layer_options(&self) -> bool {
        self.preset != Preset::Tf
            || !self.layers.is_empty()
            || !self.rename.is_empty()
            || self.fold
            || !self.declared.is_empty()
    }
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExportSummary {
    /// Batch-norm layers written (0 for `--all-variables`).
    pub layers: usize,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of the output file.
    pub bytes: u64,
    /// Keys not written, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Notes for the user (see [`ExportPlan::notes`]).
    pub notes: Vec<String>,
}

/// Writes `plan` to `out` through a temp file renamed into place. `progress`
/// receives the data bytes written so far and the total. An `out` that is
/// one of the source's own files ([`Source::input_files`]) is refused
/// ([`crate::Error::OutputIsInput`]), whatever the policy.
///
/// Reading (with its crc check) and writing overlap: a helper thread
/// produces tensor `i + 1` while tensor `i` is written, handing them over
/// one at a time, so at most two tensors are resident at once.
pub fn write_plan(
    source: &Source,
    plan: &ExportPlan,
    out: &Path,
    policy: writer::OutputPolicy,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary> {
    writer::check_output_not_input(out, &source.input_files())?;
    let total: u64 = plan.tensors.iter().map(|t| t.nbytes).sum();
    let bytes = std::thread::scope(|scope| {
        // A rendezvous channel: the producer computes the next tensor, then
        // waits until the writer asks for it.
        let (tx, rx) = std::sync::mpsc::sync_channel::<Result<crate::bundle::Deferred<'_>>>(0);
        scope.spawn(move || {
            for t in &plan.tensors {
                if tx.send(t.produce_streamed(source, &plan.layers)).is_err() {
                    break; // the writer stopped (an error); nothing more is needed
                }
            }
        });
        let rx = std::cell::RefCell::new(rx);
        let planned: Vec<writer::PlannedTensor<'_>> = plan
            .tensors
            .iter()
            .map(|t| writer::PlannedTensor {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                nbytes: t.nbytes,
                bytes: Box::new(|| {
                    rx.borrow_mut().recv().map_err(|_| {
                        crate::Error::InvalidArgument(
                            "export: the reading thread stopped early".into(),
                        )
                    })?
                }),
            })
            .collect();
        let written = writer::write_safetensors(out, &planned, &plan.metadata, policy, &mut |w| {
            progress(w, total)
        });
        // Dropping the receiver releases a producer still waiting to send.
        drop(planned);
        drop(rx);
        written
    })?;
    Ok(ExportSummary {
        layers: plan.layers.len(),
        tensors: plan.tensors.len(),
        bytes,
        skipped: plan.skipped.clone(),
        notes: plan.notes.clone(),
    })
}

/// Writes the batch-norm layers of `source` to `out` (see the module docs).
pub fn export_layers(
    source: &Source,
    out: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary> {
    let plan = plan_layers(source, opts)?;
    write_plan(source, &plan, out, opts.output_policy(), progress)
}

/// Writes every numeric variable of `source` to `out`, under its checkpoint
/// key, bit for bit (or cast as `opts.dtype` says). `progress` receives the
/// data bytes written so far and the total.
pub fn export_all_variables(
    source: &Source,
    out: &Path,
    opts: &ExportOptions,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ExportSummary> {
    if opts.has_layer_options() {
        return Err(crate::Error::InvalidArgument(
            "preset, layer selection, renaming, folding and hyper-parameter overrides apply to \
             batch-norm layer exports, not to an export of all variables"
                .into(),
        ));
    }
    let plan = plan_all_variables(source, opts)?;
    write_plan(source, &plan, out, opts.output_policy(), progress)
}
