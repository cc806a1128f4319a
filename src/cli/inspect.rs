//! `tfbn inspect PATH [--json]` (PATH may also be a `.safetensors` file,
//! shown by `export::inspect_safetensors`).

use std::io::Write;

use anyhow::Result;
use tfbn::inspect::{inspect, InspectReport, LayerJson, VarJson};
use tfbn::source::Source;

use super::{InputPath, Outcome};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Checkpoint prefix, `.index` file, checkpoint folder, SavedModel folder,
    /// or a `.safetensors` file (shows an export's layers and conventions).
    path: InputPath,
    /// Print the report as JSON (stable schema; see the README).
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<Outcome> {
    if tfbn::export::describe::is_safetensors_file(&args.path) {
        return super::export::inspect_safetensors(&args.path, args.json);
    }
    let source = Source::open(&args.path)?;
    let report = inspect(&source)?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &report)?;
    }
    Ok(Outcome::Ok)
}

fn fmt_range(r: &Option<[Option<f64>; 2]>) -> String {
    match r {
        Some([Some(lo), Some(hi)]) => format!("{lo:.4}..{hi:.4}"),
        Some(_) => "all NaN".into(),
        None => "-".into(),
    }
}

fn present(v: &Option<VarJson>, c: char) -> char {
    if v.is_some() {
        c
    } else {
        '-'
    }
}

fn print_layer(out: &mut impl Write, l: &LayerJson) -> std::io::Result<()> {
    let vars = &l.variables;
    let flags: String = [
        present(&vars.gamma, 'g'),
        present(&vars.beta, 'b'),
        present(&vars.moving_mean, 'm'),
        present(&vars.moving_variance, 'v'),
    ]
    .iter()
    .collect();
    writeln!(
        out,
        "  {:<32} {:>8} {:<9} {:<5} {:<22} {:<22}{}",
        l.name,
        l.channels,
        l.dtype,
        flags,
        fmt_range(&l.moving_mean_range),
        fmt_range(&l.moving_variance_range),
        if l.renorm.is_some() { " renorm" } else { "" }
    )?;
    for (role, v) in [
        ("gamma", &vars.gamma),
        ("beta", &vars.beta),
        ("moving_mean", &vars.moving_mean),
        ("moving_variance", &vars.moving_variance),
    ] {
        if let Some(v) = v {
            writeln!(out, "      {role:<16} {}", v.key)?;
        }
    }
    Ok(())
}

fn print_table(out: &mut impl Write, r: &InspectReport) -> std::io::Result<()> {
    let fmt = serde_json::to_value(r.format)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    writeln!(
        out,
        "{}: {fmt}, {} naming, {} variables, {} batch-norm layers",
        r.path,
        r.style.label(),
        r.variables.len(),
        r.layers.len()
    )?;
    if !r.layers.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "  {:<32} {:>8} {:<9} {:<5} {:<22} {:<22}",
            "layer", "channels", "dtype", "gbmv", "moving_mean", "moving_variance"
        )?;
        for l in &r.layers {
            print_layer(out, l)?;
        }
    }
    let mut by_role: std::collections::BTreeMap<String, usize> = Default::default();
    for v in &r.variables {
        let role = serde_json::to_value(v.role)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default();
        *by_role.entry(role).or_default() += 1;
    }
    let roles: Vec<String> = by_role.iter().map(|(k, n)| format!("{n} {k}")).collect();
    writeln!(out)?;
    writeln!(out, "variables by role: {}", roles.join(", "))?;
    Ok(())
}
