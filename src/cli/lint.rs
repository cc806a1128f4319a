//! `tfbn lint PATH [--json] [--deny info|warning|error]`.

use std::io::Write;

use anyhow::Result;
use tfbn::lint::{lint, LintReport, Severity};

use super::{InputPath, Outcome};

/// The lowest severity that fails the run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deny {
    /// Fail on any finding.
    Info,
    /// Fail on warnings and errors.
    Warning,
    /// Fail on errors only (the default).
    Error,
}

impl From<Deny> for Severity {
    fn from(d: Deny) -> Severity {
        match d {
            Deny::Info => Severity::Info,
            Deny::Warning => Severity::Warning,
            Deny::Error => Severity::Error,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    found: super::LayerArgs,
    /// Checkpoint prefix, `.index` file, checkpoint folder or SavedModel folder.
    path: InputPath,
    /// Print `{"findings": [{code, severity, layer, message, help}]}`.
    #[arg(long)]
    json: bool,
    /// Exit 1 when a finding at or above this severity is found.
    #[arg(long, value_enum, default_value = "error")]
    deny: Deny,
}

pub fn run(args: Args) -> Result<Outcome> {
    let source = super::open_source(&args.path, &args.found)?;
    let report = lint(&source)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_findings(&mut out, &report)?;
    }
    Ok(if report.fails(args.deny.into()) {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}

/// One line per finding: `error[code] layer: message (help)`.
fn print_findings(out: &mut impl Write, r: &LintReport) -> std::io::Result<()> {
    if r.findings.is_empty() {
        return writeln!(out, "no findings");
    }
    for f in &r.findings {
        let layer = f.layer.as_deref().unwrap_or("(file)");
        writeln!(
            out,
            "{}[{}] {layer}: {} — {}",
            f.severity, f.code, f.message, f.help
        )?;
    }
    Ok(())
}
