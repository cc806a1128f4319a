//! End-to-end tests of the public API: edge cases, and the fast paths
//! against a straight-line reference written from `docs/bn-arithmetic.md`.

use super::*;
use crate::bn::ftz::TfFloat;
use crate::bn::reduce::{sum_p, sums_exact, Plan};
use ndarray::{ArrayD, IxDyn};

fn lcg_data(n: usize, seed: u64, scale: f32, offset: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * scale + offset
        })
        .collect()
}

fn arr(shape: &[usize], v: Vec<f32>) -> FloatArray {
    FloatArray::F32(ArrayD::from_shape_vec(IxDyn(shape), v).unwrap())
}

fn y32(y: &FloatArray) -> Vec<f32> {
    match y {
        FloatArray::F32(a) => a.iter().copied().collect(),
        other => panic!("{}", other.dtype()),
    }
}

fn params(c: usize) -> BnParams {
    BnParams {
        gamma: Some(lcg_data(c, 11, 1.0, 1.0)),
        beta: Some(lcg_data(c, 12, 1.0, 0.0)),
        moving_mean: lcg_data(c, 13, 2.0, 0.0),
        moving_variance: lcg_data(c, 14, 1.0, 1.5),
        renorm: None,
    }
}

fn cfg(api: BnApi, axis: isize) -> BnConfig {
    BnConfig {
        api,
        axis,
        momentum: 0.9,
        ..Default::default()
    }
}

/// `docs/bn-arithmetic.md#fused-kernel` and `#non-fused-path` written out
/// with the scalar FTZ operations,
/// for channels-last or channels-first 4-D input (no SIMD, no threads).
fn reference_training(
    api: BnApi,
    x: &[f32],
    shape: &[usize],
    axis: usize,
    p: &BnParams,
    eps: f64,
    m: f64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let c = shape[axis];
    let a: usize = shape[..axis].iter().product();
    let b: usize = shape[axis + 1..].iter().product();
    let rows = a * b;
    let at = |r: usize, ch: usize| x[((r / b) * c + ch) * b + r % b];
    let g = p.gamma.clone().unwrap();
    let be = p.beta.clone().unwrap();
    let mut y = vec![0.0f32; x.len()];
    match api {
        BnApi::Fused => {
            let inv_r = 1.0f32.div(rows as f32);
            let full = c / 8 * 8;
            let mean: Vec<f32> = (0..c)
                .map(|ch| sum_p(rows, ch < full, |r| at(r, ch)).mul(inv_r))
                .collect();
            let var: Vec<f32> = (0..c)
                .map(|ch| {
                    sum_p(rows, ch < full, |r| {
                        let d = at(r, ch).sub(mean[ch]);
                        d.mul(d)
                    })
                    .mul(inv_r)
                })
                .collect();
            let v: Vec<f32> = var.iter().map(|v| v.add(eps as f32)).collect();
            let sf: Vec<f32> = rsqrt_tf_f32(&v)
                .iter()
                .zip(&g)
                .map(|(r, g)| r.mul(*g))
                .collect();
            for (i, yv) in y.iter_mut().enumerate() {
                let ch = (i / b) % c;
                *yv = x[i].sub(mean[ch]).mul(sf[ch]).add(be[ch]);
            }
            let f = decay_python(m);
            let adj = (rows as f32).div((rows.max(2) - 1) as f32);
            let (gg, k) = (1.0f32.sub(f), f.mul(adj));
            let mm = (0..c)
                .map(|i| gg.mul(p.moving_mean[i]).add(f.mul(mean[i])))
                .collect();
            let mv = (0..c)
                .map(|i| gg.mul(p.moving_variance[i]).add(k.mul(var[i])))
                .collect();
            (y, mm, mv)
        }
        _ => {
            let reduced: Vec<bool> = (0..shape.len()).map(|i| i != axis).collect();
            let plan = Plan::simplify(shape, &reduced);
            let rt = rows as f32;
            let mean: Vec<f32> = sums_exact(x, &plan, &|v, _| v, 2)
                .iter()
                .map(|s| s.div(rt))
                .collect();
            let var: Vec<f32> = sums_exact(
                x,
                &plan,
                &|v: f32, o| {
                    let d = v.sub(mean[o]);
                    d.mul(d)
                },
                2,
            )
            .iter()
            .map(|s| s.div(rt))
            .collect();
            let v: Vec<f32> = var.iter().map(|v| v.add(eps as f32)).collect();
            let inv: Vec<f32> = rsqrt_tf_f32(&v)
                .iter()
                .zip(&g)
                .map(|(r, g)| r.mul(*g))
                .collect();
            let shift: Vec<f32> = (0..c).map(|i| be[i].sub(mean[i].mul(inv[i]))).collect();
            for (i, yv) in y.iter_mut().enumerate() {
                let ch = (i / b) % c;
                *yv = x[i].mul(inv[ch]).add(shift[ch]);
            }
            let (mf, df) = (m as f32, (1.0 - m) as f32);
            let mm = (0..c)
                .map(|i| p.moving_mean[i].mul(mf).add(mean[i].mul(df)))
                .collect();
            let mv = (0..c)
                .map(|i| p.moving_variance[i].mul(mf).add(var[i].mul(df)))
                .collect();
            (y, mm, mv)
        }
    }
}

#[test]
fn fast_paths_match_the_reference() {
    let shapes: &[(&[usize], isize)] = &[
        (&[4, 5, 6, 13], -1),
        (&[2, 3, 3, 16], -1),
        (&[4, 11, 5, 6], 1),
        (&[3, 8, 7, 9], 1),
        (&[1, 9, 4, 5], 1),
        (&[2, 2, 2, 5], -1),
        (&[8, 4, 4, 64], -1),
        (&[2, 40, 33, 33], 1),
    ];
    for (shape, axis) in shapes {
        let n: usize = shape.iter().product();
        let x = lcg_data(n, n as u64, 6.0, 0.3);
        let ax = if *axis < 0 {
            shape.len() - 1
        } else {
            *axis as usize
        };
        let c = shape[ax];
        let p = params(c);
        for api in [BnApi::Fused, BnApi::Keras3] {
            let cf = cfg(api, *axis);
            let t = training(&cf, &p, &arr(shape, x.clone())).unwrap();
            let (ry, rm, rv) = reference_training(api, &x, shape, ax, &p, cf.epsilon, cf.momentum);
            assert_eq!(y32(&t.y), ry, "{api} {shape:?}");
            assert_eq!(t.moving_mean, rm, "{api} {shape:?}");
            assert_eq!(t.moving_variance, rv, "{api} {shape:?}");
        }
    }
}

#[test]
fn single_row_batch() {
    let x = arr(&[1, 1, 1, 5], vec![1.0, -2.0, -0.0, 4.0, 1e20]);
    let p = params(5);
    // Fused: the batch variance is 0 (not NaN), so the exponential average is
    // (1 − f)·old + (f·adj)·0 with adj = 1/1.
    let t = training(&cfg(BnApi::Fused, -1), &p, &x).unwrap();
    let f = decay_python(0.9);
    let want: Vec<f32> = (0..5)
        .map(|i| {
            1.0f32
                .sub(f)
                .mul(p.moving_variance[i])
                .add(f.mul(1.0).mul(0.0))
        })
        .collect();
    assert_eq!(t.batch_variance.unwrap(), want);
    let raw = fused_batch_norm_v3(
        &x, &[1.0; 5], &[0.0; 5], &[0.0; 5], &[1.0; 5], 1e-3, 1.0, 3, true,
    )
    .unwrap();
    assert_eq!(raw.batch_variance, vec![0.0; 5]);
    assert_eq!(raw.reserve_space_1[2].to_bits(), 0, "0 + (−0) = +0");
    // Keras 3: TF copies x for a reduction over size-1 dimensions (−0 kept).
    let t = training(&cfg(BnApi::Keras3, -1), &p, &x).unwrap();
    let m = t.batch_mean.unwrap();
    assert_eq!(m[2].to_bits(), 0x8000_0000);
    assert_eq!(t.batch_variance.unwrap(), vec![0.0; 5]);
}

#[test]
fn empty_batch_gives_nan_statistics() {
    let x = arr(&[0, 3, 3, 4], vec![]);
    let p = params(4);
    for api in BnApi::ALL {
        let t = training(&cfg(api, -1), &p, &x).unwrap();
        assert_eq!(t.y.shape(), &[0, 3, 3, 4]);
        let bm = t.batch_mean.unwrap();
        assert!(bm.iter().all(|v| v.is_nan()), "{api}");
        assert!(
            t.batch_variance.unwrap().iter().all(|v| v.is_nan()),
            "{api}"
        );
        if api != BnApi::Nn {
            assert!(t.moving_mean.iter().all(|v| v.is_nan()), "{api}");
        }
        let i = inference(&cfg(api, -1), &p, &x).unwrap();
        assert_eq!(i.y.shape(), &[0, 3, 3, 4]);
    }
}

#[test]
fn channel_counts_below_and_off_the_packet() {
    for c in [1usize, 3, 7, 8, 9, 15, 17] {
        let shape = [5, 4, 3, c];
        let n: usize = shape.iter().product();
        let x = lcg_data(n, c as u64, 3.0, 1.0);
        let p = params(c);
        for api in [BnApi::Fused, BnApi::Keras3] {
            let cf = cfg(api, -1);
            let t = training(&cf, &p, &arr(&shape, x.clone())).unwrap();
            let (ry, rm, _) = reference_training(api, &x, &shape, 3, &p, cf.epsilon, cf.momentum);
            assert_eq!(y32(&t.y), ry, "{api} C={c}");
            assert_eq!(t.moving_mean, rm, "{api} C={c}");
        }
    }
}

#[test]
fn subnormal_inputs_read_as_zero() {
    let c = 8;
    let n = 40 * c;
    let mut x = lcg_data(n, 5, 2.0, 0.0);
    let mut zeroed = x.clone();
    for i in (0..n).step_by(3) {
        x[i] = if i % 2 == 0 { 1e-39 } else { -3e-40 };
        zeroed[i] = if i % 2 == 0 { 0.0 } else { -0.0 };
    }
    let p = params(c);
    for api in [BnApi::Fused, BnApi::Keras3, BnApi::TfKeras] {
        let cf = cfg(api, -1);
        let a = training(&cf, &p, &arr(&[40, 1, 1, c], x.clone())).unwrap();
        let b = training(&cf, &p, &arr(&[40, 1, 1, c], zeroed.clone())).unwrap();
        assert_eq!(a.moving_mean, b.moving_mean, "{api}");
        assert_eq!(a.moving_variance, b.moving_variance, "{api}");
        assert_eq!(y32(&a.y), y32(&b.y), "{api}");
    }
    // Channels-first (pattern Q for Keras 3, runs for the fused kernel).
    let shape = [4, 8, 5, 6];
    let mut x = lcg_data(960, 6, 2.0, 0.0);
    let mut zeroed = x.clone();
    for i in (0..960).step_by(7) {
        x[i] = 2e-39;
        zeroed[i] = 0.0;
    }
    for api in [BnApi::Fused, BnApi::Keras3] {
        let cf = cfg(api, 1);
        let a = training(&cf, &params(8), &arr(&shape, x.clone())).unwrap();
        let b = training(&cf, &params(8), &arr(&shape, zeroed.clone())).unwrap();
        assert_eq!(a.moving_variance, b.moving_variance, "{api} NCHW");
        assert_eq!(y32(&a.y), y32(&b.y), "{api} NCHW");
    }
    // An all-subnormal batch normalizes to beta exactly.
    let x = arr(&[4, 2, 2, 3], vec![1e-39; 48]);
    let t = training(&cfg(BnApi::Fused, -1), &params(3), &x).unwrap();
    let beta = params(3).beta.unwrap();
    for (i, v) in y32(&t.y).iter().enumerate() {
        assert_eq!(*v, beta[i % 3]);
    }
}

#[test]
fn nan_and_inf_stay_in_their_channel() {
    let c = 9;
    let mut x = lcg_data(30 * c, 8, 2.0, 0.0);
    x[c + 2] = f32::NAN;
    x[5 * c + 4] = f32::INFINITY;
    let p = params(c);
    for api in [BnApi::Fused, BnApi::Keras3] {
        let t = training(&cfg(api, -1), &p, &arr(&[30, 1, 1, c], x.clone())).unwrap();
        let m = t.batch_mean.clone().unwrap();
        assert!(
            m[2].is_nan() && m[4].is_infinite() || m[4].is_nan(),
            "{api}: {m:?}"
        );
        for (ch, v) in m.iter().enumerate() {
            if ch != 2 && ch != 4 {
                assert!(v.is_finite(), "{api} channel {ch}");
            }
        }
        let y = y32(&t.y);
        assert!(y
            .iter()
            .enumerate()
            .filter(|(i, _)| i % c == 2)
            .all(|(_, v)| v.is_nan()));
        assert!(y
            .iter()
            .enumerate()
            .filter(|(i, _)| i % c == 0)
            .all(|(_, v)| v.is_finite()));
    }
    // Infinite and NaN moving variances: rsqrt gives 0 and NaN.
    let mut p = params(c);
    p.moving_variance[1] = f32::INFINITY;
    p.moving_variance[3] = f32::NAN;
    let y = y32(&inference(
        &cfg(BnApi::Fused, -1),
        &p,
        &arr(&[30, 1, 1, c], lcg_data(30 * c, 9, 1.0, 0.0)),
    )
    .unwrap()
    .y);
    let beta = p.beta.clone().unwrap();
    for r in 0..30 {
        assert_eq!(y[r * c + 1], beta[1]);
        assert!(y[r * c + 3].is_nan());
    }
    // The same through F2 (Keras 3): inv = 0 gives x·0 + (beta − mean·0) =
    // beta; a NaN inv gives NaN.
    let y = y32(&inference(
        &cfg(BnApi::Keras3, -1),
        &p,
        &arr(&[30, 1, 1, c], lcg_data(30 * c, 9, 1.0, 0.0)),
    )
    .unwrap()
    .y);
    for r in 0..30 {
        assert_eq!(y[r * c + 1], beta[1]);
        assert!(y[r * c + 3].is_nan());
        assert!(y[r * c + 5].is_finite());
    }
}

#[test]
fn negative_zero_and_the_constant_beta_of_tf_keras_fused() {
    // x = mean exactly: (x − mean)·sf = +0 or −0; tf_keras's fused path adds a
    // constant 0 when center is off, which turns −0 into +0; Keras 3 drops
    // the addition.
    let c = 4;
    let mut p = params(c);
    p.moving_mean = vec![2.0; c];
    let x = arr(&[2, 1, 1, c], vec![2.0; 2 * c]);
    let tk = BnConfig {
        api: BnApi::TfKeras,
        center: false,
        ..Default::default()
    };
    let y = y32(&inference(&tk, &p, &x).unwrap().y);
    assert!(y.iter().all(|v| v.to_bits() == 0));
    // F2 without beta: y = x·inv − mean·inv = +0 here as well (x·inv − x·inv).
    let k3 = BnConfig {
        api: BnApi::Keras3,
        center: false,
        ..Default::default()
    };
    let y = y32(&inference(&k3, &p, &x).unwrap().y);
    assert!(y.iter().all(|v| *v == 0.0));
    // A −0 input with zero mean and no centering keeps its sign in Keras 3.
    p.moving_mean = vec![0.0; c];
    let x = arr(&[1, 1, 1, c], vec![-0.0; c]);
    let y = y32(&inference(&k3, &p, &x).unwrap().y);
    assert!(y.iter().all(|v| v.to_bits() == 0x8000_0000), "{y:?}");
    let y = y32(&inference(&tk, &p, &x).unwrap().y);
    assert!(y.iter().all(|v| v.to_bits() == 0), "{y:?}");
}

#[test]
fn huge_magnitudes_overflow_like_tf() {
    let c = 8;
    let x: Vec<f32> = (0..20 * c)
        .map(|i| if (i / c) % 2 == 0 { 2e19 } else { -2e19 })
        .collect();
    let p = params(c);
    let t = training(&cfg(BnApi::Fused, -1), &p, &arr(&[20, 1, 1, c], x)).unwrap();
    // The mean is 0 but the squares overflow: the biased variance is +inf,
    // so rsqrt gives 0 and y = ±0·0 + beta.
    let flat = arr(&[20, c], vec![0.0; 20 * c]);
    let raw = fused_batch_norm_v3(
        &flat, &[1.0; 8], &[0.5; 8], &[0.0; 8], &[1.0; 8], 1e-3, 1.0, 1, false,
    );
    assert!(raw.is_err(), "rank 2 is not a FusedBatchNormV3 layout");
    assert!(t.batch_variance.unwrap().iter().all(|v| v.is_infinite()));
    let beta = p.beta.clone().unwrap();
    for (i, v) in y32(&t.y).iter().enumerate() {
        assert_eq!(*v, beta[i % c]);
    }
    // Sums that overflow make the mean infinite and y NaN, as in TF.
    let x = vec![3e38f32; 20 * c];
    let t = training(&cfg(BnApi::Keras3, -1), &p, &arr(&[20, c], x)).unwrap();
    assert!(t.batch_mean.unwrap().iter().all(|v| *v == f32::INFINITY));
    assert!(y32(&t.y).iter().all(|v| v.is_nan()));
}

#[test]
fn near_constant_channels() {
    let c = 10;
    let mut x = vec![0.0f32; 64 * c];
    for r in 0..64 {
        for ch in 0..c {
            x[r * c + ch] = 1000.0
                + if ch % 2 == 0 {
                    0.0
                } else {
                    (r % 3) as f32 * 6.1e-5
                };
        }
    }
    let p = params(c);
    for api in [BnApi::Fused, BnApi::Keras3] {
        let cf = cfg(api, -1);
        let t = training(&cf, &p, &arr(&[64, 1, 1, c], x.clone())).unwrap();
        let (ry, _, rv) =
            reference_training(api, &x, &[64, 1, 1, c], 3, &p, cf.epsilon, cf.momentum);
        assert_eq!(y32(&t.y), ry, "{api}");
        assert_eq!(t.moving_variance, rv, "{api}");
        let bv = t.batch_variance.unwrap();
        assert_eq!(bv[0], if api == BnApi::Fused { rv[0] } else { 0.0 });
    }
}

#[test]
fn dtypes_round_to_nearest_even() {
    assert_eq!(f32_to_bf16_tf(1.0 + 2f32.powi(-8)).to_bits(), 0x3F80); // tie to even
    assert_eq!(f32_to_bf16_tf(1.0 + 3.0 * 2f32.powi(-8)).to_bits(), 0x3F82);
    assert_eq!(f32_to_bf16_tf(f32::NAN).to_bits(), 0x7FC0);
    assert_eq!(f32_to_bf16_tf(-f32::NAN).to_bits(), 0xFFC0);
    assert_eq!(f32_to_f16_tf(f32::NAN).to_bits(), 0x7E00);
    assert_eq!(f32_to_f16_tf(1.0 + 2f32.powi(-11)).to_bits(), 0x3C00);
    // f16 input: computed in f32, statistics in f32, y rounded back.
    let x32 = lcg_data(5 * 4 * 3 * 8, 3, 4.0, 0.0);
    let xh: Vec<half::f16> = x32.iter().map(|&v| half::f16::from_f32(v)).collect();
    let back: Vec<f32> = xh.iter().map(|v| v.to_f32()).collect();
    let p = params(8);
    let c = cfg(BnApi::Fused, -1);
    let th = training(
        &c,
        &p,
        &FloatArray::F16(ArrayD::from_shape_vec(IxDyn(&[5, 4, 3, 8]), xh).unwrap()),
    )
    .unwrap();
    let tf = training(&c, &p, &arr(&[5, 4, 3, 8], back)).unwrap();
    assert_eq!(th.moving_mean, tf.moving_mean);
    let FloatArray::F16(yh) = &th.y else { panic!() };
    for (a, b) in yh.iter().zip(y32(&tf.y)) {
        assert_eq!(a.to_bits(), f32_to_f16_tf(b).to_bits());
    }
}

#[test]
fn float64_layers() {
    let shape = [4, 3, 3, 6];
    let x: Vec<f64> = lcg_data(216, 4, 3.0, 0.5)
        .into_iter()
        .map(|v| v as f64 * 1.000_000_1)
        .collect();
    let p = BnParams::<f64>::initial(6, false);
    let c = BnConfig::default();
    let t = training_f64(
        &c,
        &p,
        ArrayD::from_shape_vec(IxDyn(&shape), x.clone())
            .unwrap()
            .view(),
    )
    .unwrap();
    // Mean of channel 0 by the book: sequential sum (R = 36 ≥ 16 but C < 4·⌊C/4⌋ = 4 for ch 4, 5).
    let rows = 36;
    let m0 = sum_p(rows, true, |r| x[r * 6]).div(rows as f64);
    assert_eq!(t.batch_mean.as_ref().unwrap()[0], m0);
    let m5 = sum_p(rows, false, |r| x[r * 6 + 5]).div(rows as f64);
    assert_eq!(t.batch_mean.unwrap()[5], m5);
    // The fused kernel has no float64.
    let f = BnConfig {
        api: BnApi::Fused,
        ..Default::default()
    };
    assert!(training_f64(
        &f,
        &p,
        ArrayD::from_shape_vec(IxDyn(&shape), x).unwrap().view()
    )
    .is_err());
}

#[test]
fn parameter_errors_name_the_variable() {
    let x = arr(&[2, 3], vec![0.0; 6]);
    let mut p = params(3);
    p.moving_mean.pop();
    match training(&BnConfig::default(), &p, &x) {
        Err(crate::error::Error::TensorMismatch { key, .. }) => assert_eq!(key, "moving_mean"),
        other => panic!("{other:?}"),
    }
    let mut p = params(3);
    p.gamma = None;
    assert!(inference(&BnConfig::default(), &p, &x).is_err());
    let off = BnConfig {
        scale: false,
        ..Default::default()
    };
    assert!(inference(&off, &p, &x).is_ok());
    let vb = BnConfig {
        api: BnApi::TfKeras,
        virtual_batch_size: Some(3),
        ..Default::default()
    };
    assert!(training(&vb, &params(3), &arr(&[4, 3], vec![0.0; 12])).is_err());
    let half = BnConfig {
        api: BnApi::Nn,
        ..Default::default()
    };
    // tf.nn on float16 runs in float16 (nn_half); its parameters are checked
    // like everyone's.
    let xh = FloatArray::F16(ArrayD::from_elem(IxDyn(&[2, 3]), half::f16::ONE));
    assert!(matches!(
        inference(&half, &params(3), &xh).map(|r| r.y),
        Ok(FloatArray::F16(_))
    ));
    let mut no_gamma = params(3);
    no_gamma.gamma = None;
    let e = training(&half, &no_gamma, &xh).map(|_| ()).unwrap_err();
    assert!(e.to_string().contains("gamma"), "{e}");
}

#[test]
fn into_variants_match_allocating_ones() {
    let shape = [3, 5, 4, 16];
    let x = lcg_data(960, 21, 2.0, 0.0);
    let p = params(16);
    for api in BnApi::ALL {
        let c = cfg(api, -1);
        let a = ArrayD::from_shape_vec(IxDyn(&shape), x.clone()).unwrap();
        let mut y = ArrayD::<f32>::zeros(IxDyn(&shape));
        let s = training_into(&c, &p, a.view(), y.view_mut()).unwrap();
        let t = training(&c, &p, &FloatArray::F32(a.clone())).unwrap();
        assert_eq!(FloatArray::F32(y.clone()), t.y);
        assert_eq!(s.moving_mean, t.moving_mean);
        inference_into(&c, &p, a.view(), y.view_mut()).unwrap();
        assert_eq!(
            FloatArray::F32(y.clone()),
            inference(&c, &p, &FloatArray::F32(a)).unwrap().y
        );
    }
    // A transposed (non-contiguous) view is accepted and copied.
    let a = ArrayD::from_shape_vec(IxDyn(&[16, 60]), x.clone()).unwrap();
    let v = a.t().to_owned();
    let t1 = training(
        &BnConfig::default(),
        &p,
        &FloatArray::F32(a.t().into_owned()),
    )
    .unwrap();
    let t2 = training(
        &BnConfig::default(),
        &p,
        &FloatArray::F32(v.as_standard_layout().into_owned()),
    )
    .unwrap();
    assert_eq!(t1.moving_mean, t2.moving_mean);
}

/// Every result is the same whatever the thread count: work is only split
/// where the split cannot change a bit (channel ranges of reductions,
/// element ranges of the element-wise pass). Shapes are large enough to
/// cross the parallel thresholds: NHWC with narrow rows (one thread per
/// reduction) and with rows wider than `SPLIT_ROW_BYTES` (channel split),
/// NCHW (fused runs and pattern-Q blocks split by channel), and 2-D.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    use crate::bn::par::with_threads;
    let cases: [(&[usize], isize); 4] = [
        (&[8, 16, 16, 40], -1),
        (&[2, 3, 3, 8200], -1),
        (&[4, 20, 30, 31], 1),
        (&[600, 136], -1),
    ];
    for (shape, axis) in cases {
        let n: usize = shape.iter().product();
        let x = lcg_data(n, 31, 3.0, 0.5);
        let c = shape[if axis < 0 {
            shape.len() - 1
        } else {
            axis as usize
        }];
        let p = params(c);
        let xh = FloatArray::F16(
            ArrayD::from_shape_vec(
                IxDyn(shape),
                x.iter().map(|&v| half::f16::from_f32(v)).collect(),
            )
            .unwrap(),
        );
        let run = |threads: usize| {
            with_threads(threads, || {
                let mut outs = Vec::new();
                for api in [BnApi::Fused, BnApi::Keras3, BnApi::Nn] {
                    if api == BnApi::Fused && shape.len() < 4 {
                        continue; // the fused op takes 4-D and 5-D inputs only
                    }
                    let cf = cfg(api, axis);
                    let inputs = if api == BnApi::Nn {
                        vec![arr(shape, x.clone()), xh.clone()]
                    } else {
                        vec![arr(shape, x.clone())]
                    };
                    for input in inputs {
                        let t = training(&cf, &p, &input).unwrap();
                        let i = inference(&cf, &p, &input).unwrap();
                        let y_bits = |y: &FloatArray| -> Vec<u64> {
                            y.to_f64_vec().iter().map(|v| v.to_bits()).collect()
                        };
                        let v_bits = |v: &[f32]| -> Vec<u64> {
                            v.iter().map(|x| u64::from(x.to_bits())).collect()
                        };
                        outs.push(y_bits(&t.y));
                        outs.push(y_bits(&i.y));
                        outs.push(v_bits(&t.batch_mean.unwrap_or_default()));
                        outs.push(v_bits(&t.batch_variance.unwrap_or_default()));
                        outs.push(v_bits(&t.moving_mean));
                        outs.push(v_bits(&t.moving_variance));
                    }
                }
                outs
            })
        };
        let one = run(1);
        for threads in [2, 3, 4] {
            assert!(
                one == run(threads),
                "{shape:?}: {threads} threads changed a result"
            );
        }
    }
}
