//! Unit tests of the TensorFlow-side graphs (no TensorFlow needed).

use super::*;

fn tf_path_f32(cfg: &BnConfig, rank: usize, axis: usize) -> Result<TfPath> {
    tf_path(cfg, rank, axis, FloatDType::F32)
}

#[test]
fn float64_is_never_fused_by_the_keras_layers() {
    let c = |api, fused| BnConfig {
        api,
        fused,
        ..Default::default()
    };
    let f64p = |cfg: &BnConfig| tf_path(cfg, 4, 3, FloatDType::F64);
    assert_eq!(f64p(&c(BnApi::TfKeras, None)).unwrap(), TfPath::NonFused);
    assert!(f64p(&c(BnApi::TfKeras, Some(true))).is_err());
    assert_eq!(f64p(&c(BnApi::Fused, None)).unwrap(), TfPath::Fused);
    assert!(dtype_not_applicable(&c(BnApi::Fused, None), FloatDType::F64).is_some());
    assert!(dtype_not_applicable(&c(BnApi::Tf1Layers, Some(true)), FloatDType::F64).is_some());
    assert!(dtype_not_applicable(&c(BnApi::Tf1Layers, None), FloatDType::F64).is_none());
    assert!(dtype_not_applicable(&c(BnApi::Fused, None), FloatDType::BF16).is_none());
    for d in FloatDType::ALL {
        assert_eq!(d.short().parse(), Ok(d));
        assert_eq!(d.name().parse(), Ok(d));
        assert_eq!(d.to_string(), d.name());
        assert_eq!(FloatDType::try_from(crate::DType::from(d)), Ok(d));
    }
}

/// TF's rule (this module's own copy) on every API, fused setting and
/// layout, pinned by hand and against the native layer's rule, which the
/// TF side deliberately does not call.
#[test]
fn path_rule_follows_tf() {
    use crate::bn::RenormConfig;
    use TfPath::{Fused, NonFused};
    let c = |api, fused| BnConfig {
        api,
        fused,
        ..Default::default()
    };
    let cases: [(BnConfig, usize, usize, Option<TfPath>); 9] = [
        (c(BnApi::TfKeras, None), 4, 3, Some(Fused)),
        (c(BnApi::TfKeras, None), 4, 1, Some(Fused)),
        (c(BnApi::TfKeras, None), 4, 2, Some(NonFused)),
        (c(BnApi::TfKeras, None), 2, 1, Some(NonFused)),
        (c(BnApi::Tf1Layers, Some(false)), 4, 3, Some(NonFused)),
        (c(BnApi::Tf1Layers, Some(true)), 2, 1, None),
        (c(BnApi::Keras3, None), 4, 3, Some(NonFused)),
        (c(BnApi::Fused, None), 2, 1, None),
        (c(BnApi::Fused, None), 5, 1, Some(Fused)),
    ];
    for (cfg, rank, axis, want) in &cases {
        let got = tf_path_f32(cfg, *rank, *axis).ok();
        assert_eq!(
            got, *want,
            "{} fused {:?} rank {rank} axis {axis}",
            cfg.api, cfg.fused
        );
    }
    let renorm = BnConfig {
        renorm: Some(RenormConfig::default()),
        ..c(BnApi::TfKeras, None)
    };
    // The native rule agrees wherever it accepts the configuration (it
    // refuses the raw op on an unfusable layout in `check_validity`).
    let mut all = cases.map(|(cfg, rank, axis, _)| (cfg, rank, axis)).to_vec();
    all.push((renorm, 4, 3));
    for api in [
        BnApi::Fused,
        BnApi::TfKeras,
        BnApi::Tf1Layers,
        BnApi::Keras3,
        BnApi::Nn,
    ] {
        for fused in [None, Some(false), Some(true)] {
            for (rank, axis) in [(2, 1), (4, 3), (4, 1), (4, 2), (5, 4)] {
                all.push((c(api, fused), rank, axis));
            }
        }
    }
    for (cfg, rank, axis) in &all {
        for (dtype, is_f64) in [(FloatDType::F32, false), (FloatDType::F64, true)] {
            let tf = tf_path(cfg, *rank, *axis, dtype).ok();
            let native = cfg.path(*rank, *axis, is_f64).ok().map(|p| match p {
                crate::bn::KernelPath::Fused => Fused,
                crate::bn::KernelPath::NonFused => NonFused,
            });
            let ctx = format!(
                "{} fused {:?} rank {rank} axis {axis} {dtype}",
                cfg.api, cfg.fused
            );
            let fusable = matches!(rank, 4 | 5) && (*axis == 1 || axis + 1 == *rank);
            match (tf, native) {
                (Some(t), Some(n)) => assert_eq!(t, n, "{ctx}"),
                (None, None) => {}
                // The raw op on an unfusable layout: the native side
                // refuses it in `check_validity`, before choosing a path.
                (None, Some(_)) => assert!(cfg.api == BnApi::Fused && !fusable, "{ctx}"),
                // The raw op on float64: TF itself refuses it when the graph
                // runs (`dtype_not_applicable` reports it first).
                (Some(_), None) => assert!(cfg.api == BnApi::Fused && is_f64, "{ctx}"),
            }
        }
    }
    assert_eq!(data_format(5, 4), "NDHWC");
    assert_eq!(data_format(4, 1), "NCHW");
}
