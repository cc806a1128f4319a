//! `tfbn lint PATH [--json] [--deny info|warning|error]`.

use std::io::Write;

use anyhow::Result;
use tfbn::lint::{lint_with, Allow, LintReport, LintSettings, Severity};

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
    /// Silence findings of CODE, for the layers matching LAYER_GLOB or
    /// everywhere (repeatable; also `allow` in a --hyper sidecar). Allowed
    /// findings are counted, never fail the run, and are listed under
    /// `allowed` in the JSON.
    #[arg(long, value_name = "CODE[=LAYER_GLOB]", value_parser = parse_allow)]
    allow: Vec<Allow>,
}

fn parse_allow(s: &str) -> Result<Allow, String> {
    s.parse().map_err(|e: tfbn::Error| e.to_string())
}

pub fn run(args: Args) -> Result<Outcome> {
    let opened = super::open_source(&args.path, &args.found)?;
    let mut allow = opened
        .allow
        .iter()
        .map(|a| a.parse::<Allow>())
        .collect::<Result<Vec<_>, _>>()?;
    allow.extend(args.allow.iter().cloned());
    let settings = LintSettings {
        declared: opened.declared,
        allow,
    };
    let report = lint_with(&opened.source, &settings)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_findings(&mut out, &report)?;
    }
    if report
        .findings
        .iter()
        .any(|f| f.code == tfbn::lint::Code::UnknownHyperparameters)
    {
        eprintln!(
            "hint: {}; --allow unknown-hyperparameters[=GLOB] accepts TF's defaults",
            super::DECLARE_LEGEND
        );
    }
    Ok(if report.fails(args.deny.into()) {
        Outcome::Failed
    } else {
        Outcome::Ok
    })
}

/// One line per finding: `error[code] layer: message — help`, then a
/// summary line counting findings by severity and the allowed ones.
fn print_findings(out: &mut impl Write, r: &LintReport) -> std::io::Result<()> {
    for f in &r.findings {
        let layer = f.layer.as_deref().unwrap_or("(file)");
        writeln!(
            out,
            "{}[{}] {layer}: {} — {}",
            f.severity, f.code, f.message, f.help
        )?;
    }
    let count = |s: Severity| r.findings.iter().filter(|f| f.severity == s).count();
    let allowed = if r.allowed.is_empty() {
        String::new()
    } else {
        format!(", {} allowed", r.allowed.len())
    };
    if r.findings.is_empty() {
        writeln!(out, "no findings{allowed}")
    } else {
        writeln!(
            out,
            "{} findings: {} error, {} warning, {} info{allowed}",
            r.findings.len(),
            count(Severity::Error),
            count(Severity::Warning),
            count(Severity::Info)
        )
    }
}
