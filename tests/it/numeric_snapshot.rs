//! The numeric snapshot helpers: tolerant where they should be, loud where
//! the numbers really moved, and byte-stable.

use std::process::Command;

use tfbn::snapshot::{
    drifts, snapshot_layers, ArraySnapshot, LayerSnapshotPlan, Snapshot, SnapshotOptions,
    Tolerance, ValueType,
};
use tfbn::source::Source;

use crate::common::fixture;

fn layer_snapshot(name: &str) -> Snapshot {
    let fx = fixture(name);
    let source = Source::open(fx.rel_open_path()).unwrap();
    snapshot_layers(
        &source,
        &LayerSnapshotPlan::default(),
        &Default::default(),
        &SnapshotOptions::default(),
    )
    .unwrap()
}

/// Moves value `i` of array `a` by `ulps` units in the last place (f32).
fn nudge(snap: &mut Snapshot, a: usize, i: usize, ulps: i32) {
    let values = snap.arrays[a].values.as_mut().unwrap();
    let bits = (values[i] as f32).to_bits() as i32 + ulps;
    values[i] = f32::from_bits(bits as u32) as f64;
}

#[test]
fn one_ulp_passes_under_ulp4_but_not_exact() {
    let old = layer_snapshot("tf1_trained");
    let text = old.to_text(&SnapshotOptions::default());
    let mut new = Snapshot::parse(&text).unwrap();
    assert!(drifts(&old, &new, Tolerance::Exact).is_empty());
    nudge(&mut new, 0, 7, 1);
    assert!(drifts(&old, &new, Tolerance::Ulp(4)).is_empty());
    let d = drifts(&old, &new, Tolerance::Exact);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].what, "value [7]");
    // The line says how far it moved, in ULPs of the values' precision.
    assert!(d[0].to_string().ends_with("(1 ULP)"), "{}", d[0]);
}

#[test]
fn a_relative_change_of_1e_3_in_one_channel_fails_and_names_it() {
    let old = layer_snapshot("tf1_trained");
    let mut new = old.clone();
    // Array 0 is batch_normalization/inference/y, NHWC with 8 channels.
    let a = &mut new.arrays[0];
    assert_eq!(a.name, "batch_normalization/inference/y");
    let c = a.shape[a.channel_axis];
    let values = a.values.as_mut().unwrap();
    for (i, v) in values.iter_mut().enumerate() {
        if i % c == 5 {
            *v = ((*v as f32) * 1.001) as f64;
        }
    }
    for tol in ["ulp:4", "rel:1e-4", "abs:1e-5"] {
        let d = drifts(&old, &new, Tolerance::parse(tol).unwrap());
        assert!(!d.is_empty(), "{tol}: drift not caught");
        let msg = d[0].to_string();
        assert!(msg.contains("batch_normalization/inference/y"), "{msg}");
        assert!(msg.contains("channel 5"), "{msg}");
        assert!(msg.contains("old ") && msg.contains("new "), "{msg}");
    }
    assert!(drifts(&old, &new, Tolerance::Rel(2e-3)).is_empty());
}

#[test]
fn snapshot_text_is_byte_stable_and_parses_back() {
    let a = layer_snapshot("keras3_functional").to_text(&SnapshotOptions::default());
    let b = layer_snapshot("keras3_functional").to_text(&SnapshotOptions::default());
    assert_eq!(a, b);
    let parsed = Snapshot::parse(&a).unwrap();
    assert_eq!(parsed.to_text(&SnapshotOptions::default()), a);
}

#[test]
fn snapshot_is_the_same_with_one_and_two_threads() {
    let fx = fixture("tfkeras_ckpt");
    let run = |threads: &str, out: &std::path::Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_tfbn"))
            .env("TFBN_THREADS", threads)
            .args([
                "snapshot",
                fx.open_path().to_str().unwrap(),
                "--batch",
                "64",
                "-o",
            ])
            .arg(out)
            .output()
            .unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::fs::read(out).unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let one = run("1", &dir.path().join("one.snap"));
    let two = run("2", &dir.path().join("two.snap"));
    assert_eq!(one, two, "thread count changed the numbers");
}

#[test]
fn digest_ignores_noise_and_catches_drift() {
    let values: Vec<f64> = (0..64).map(|i| (i as f64 * 0.37).sin()).collect();
    let opts = SnapshotOptions::default();
    let base = ArraySnapshot::new("x", ValueType::F32, &[8, 8], 1, &values, &opts).unwrap();
    let noisy: Vec<f64> = values
        .iter()
        .map(|v| f32::from_bits((*v as f32).to_bits() + 1) as f64)
        .collect();
    let noisy = ArraySnapshot::new("x", ValueType::F32, &[8, 8], 1, &noisy, &opts).unwrap();
    assert_eq!(base.digest, noisy.digest);
    let mut drifted = values.clone();
    drifted[3] += 0.05;
    let drifted = ArraySnapshot::new("x", ValueType::F32, &[8, 8], 1, &drifted, &opts).unwrap();
    assert_ne!(base.digest, drifted.digest);
}

#[test]
fn cli_check_exits_0_1_2() {
    let fx = fixture("tf1_trained");
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("bn.snap");
    let tfbn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tfbn"))
            .args(args)
            .output()
            .unwrap()
    };
    let path = fx.open_path();
    let path = path.to_str().unwrap();
    let o = tfbn(&["snapshot", path, "-o", snap.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = tfbn(&["snapshot", path, "--check", snap.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // Move one channel of one array by 1e-3 relative: exit 1, a readable diff.
    let mut s = Snapshot::parse(&std::fs::read_to_string(&snap).unwrap()).unwrap();
    let a = &mut s.arrays[2];
    let c = a.shape[a.channel_axis];
    let inner: usize = a.shape[a.channel_axis + 1..]
        .iter()
        .product::<usize>()
        .max(1);
    for (i, v) in a.values.as_mut().unwrap().iter_mut().enumerate() {
        if (i / inner) % c == 1 {
            *v = ((*v as f32) * 1.001) as f64;
        }
    }
    let name = a.name.clone();
    let moved = dir.path().join("moved.snap");
    std::fs::write(&moved, s.to_text(&SnapshotOptions::default())).unwrap();
    let o = tfbn(&[
        "snapshot",
        path,
        "--check",
        moved.to_str().unwrap(),
        "--tolerance",
        "ulp:4",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains(&name) && out.contains("channel 1"), "{out}");

    // Garbage is bad input.
    let junk = dir.path().join("junk.snap");
    std::fs::write(&junk, "not a snapshot").unwrap();
    let o = tfbn(&["snapshot", path, "--check", junk.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let o = tfbn(&[
        "snapshot",
        path,
        "--check",
        snap.to_str().unwrap(),
        "--tolerance",
        "ulp:x",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

/// The project's own locked outputs, through the insta glue users get.
///
/// Native outputs follow the host CPU's `RSQRTPS` estimate, as TF's do
/// (docs/bn-arithmetic.md, "rsqrt"): locked on an AMD EPYC and checked on
/// an Intel Xeon they moved by up to 8 ULP element-wise (values near zero)
/// but at most 2 ULP of each array's largest magnitude — the tolerance the
/// README recommends for CI fleets of mixed CPUs.
#[cfg(feature = "insta")]
#[test]
fn locked_native_outputs_of_the_tf1_fixture() {
    let snap = layer_snapshot("tf1_trained");
    tfbn::assert_numeric_snapshot!("native_tf1_trained", &snap, "ulp-of-max:4");
}

/// A snapshot's header records each layer's settings and what was assumed:
/// declaring a setting the old snapshot assumed (even with the same value)
/// is drift, so a change of source cannot pass unnoticed.
#[test]
fn a_change_of_settings_source_is_drift() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("k3.snap");
    let path = "testdata/keras3_functional/ckpt/ckpt-1";
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tfbn"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&[
        "snapshot",
        path,
        "--layer",
        "bn",
        "-o",
        snap.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0));
    let text = std::fs::read_to_string(&snap).unwrap();
    assert!(text.contains("  assumed epsilon, momentum, axis"), "{text}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("assumed from TF's defaults"));
    let check = |extra: &[&str]| {
        let mut a = vec![
            "snapshot",
            "--check",
            snap.to_str().unwrap(),
            path,
            "--layer",
            "bn",
        ];
        a.extend_from_slice(extra);
        run(&a)
    };
    assert_eq!(check(&[]).status.code(), Some(0));
    let o = check(&["--epsilon", "bn=0.001"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("layer bn: settings were epsilon 0.001 (default)"),
        "{out}"
    );
    assert!(
        out.contains("assumed were epsilon, momentum, axis, now momentum, axis"),
        "{out}"
    );
    assert!(!out.contains("value ["), "only the header moved: {out}");
}
