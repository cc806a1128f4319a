#!/usr/bin/env python3
"""PyTorch as a real consumer of tfbn's `pytorch` preset, on CPU and CUDA.

Two stages, so the check can run on a machine that has PyTorch (and a GPU)
but neither Rust nor TensorFlow:

    # here: export every fixture layer with the pytorch preset and collect
    # what the check needs (the exports, the manifests, TF's goldens)
    python3 scripts/check_torch_consumer.py prepare OUT_DIR [--tfbn target/release/tfbn]

    # where torch is: load each export with `torch.nn.BatchNorm{1,2,3}d.
    # load_state_dict(strict=True)`, run it, compare with TF's outputs
    python3 scripts/check_torch_consumer.py check OUT_DIR [--device cpu|cuda|all] [--log FILE]

`prepare` exports each fixture's layers as a user would: the epsilon and
momentum the checkpoint itself does not hold are declared with `--epsilon` /
`--momentum` (values from the fixture's manifest, i.e. from the Python model
that TensorFlow built), and so is the moving-variance convention
(`--variance`: Bessel-corrected where TF ran its fused kernel, biased
otherwise), which depends on the input's rank and so cannot be read from a
checkpoint without its graph. The check then reads everything a torch user reads:
the module's state dict (weight, bias, running_mean, running_var,
num_batches_tracked) and, from the safetensors metadata, `epsilon`,
`momentum_torch`, `axis` and the moving-variance convention.

Per layer and device it reports, against TensorFlow's Eigen goldens:

* inference: torch `eval()` output vs TF's inference `y`;
* training (one step from the exported state): `y` vs TF's training `y`,
  `running_mean` vs TF's updated `moving_mean`, and `running_var` vs TF's
  `moving_variance` where the conventions agree (TF's fused kernel stores
  the Bessel-corrected batch variance like torch; TF's non-fused layers
  store the biased one, which torch cannot reproduce: reported, not failed).
  Renorm layers are checked in inference only (torch has no renorm).

Errors are given in ULPs of the largest magnitude of TF's array (an error
budget relative to the array's scale, as `tfbn verify --tolerance
ulp-of-max:N`). PyTorch's arithmetic is not TF's (other summation order,
FMA, exact rsqrt), so equality is not expected; a layer fails when an error
exceeds BUDGET_ULP_OF_MAX, which is far above float32 rounding noise and far
below any convention mistake (epsilon 1e-3 vs 1e-5 moves y by ~1e-3 of its
scale, i.e. thousands of ULPs).

Exit status 0 when every layer passes on every device asked for, 1 otherwise.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys

BUDGET_ULP_OF_MAX = 64


def prepare(out_dir, tfbn, testdata):
    from safetensors import safe_open

    os.makedirs(out_dir, exist_ok=True)
    count = 0
    for fixture in sorted(os.listdir(testdata)):
        man_path = os.path.join(testdata, fixture, "expected", "manifest.json")
        if not os.path.exists(man_path):
            continue
        manifest = json.load(open(man_path))
        layers = [l for l in manifest.get("layers", []) if l.get("golden")]
        if not layers or manifest.get("open") is None:
            continue
        src = os.path.join(testdata, fixture, manifest["open"])
        dst = os.path.join(out_dir, fixture)
        os.makedirs(dst, exist_ok=True)
        out = os.path.join(dst, "pytorch.safetensors")
        # A first export tells which TF name each manifest layer has.
        subprocess.run([tfbn, "export", src, "-o", out, "--preset", "pytorch", "--force", "-q"], check=True)
        with safe_open(out, framework="np") as f:
            meta = f.metadata()
        flags = []
        for l in layers:
            mean_key = l["variables"]["moving_mean"]["key"]
            modules = [m for m in json.loads(meta["tfbn.layers"])
                       if meta.get(f"tfbn.key.{m}.running_mean") == mean_key]
            if len(modules) != 1:
                sys.exit(f"{fixture}: no single module for {mean_key}")
            tf_name = meta[f"tfbn.layer.{modules[0]}.tf_name"]
            # The stored moving variance is Bessel-corrected where TF ran its
            # fused kernel, biased otherwise; a checkpoint alone cannot say
            # which (it depends on the input's rank), so declare it as a user
            # would.
            variance = "bessel" if l["hyper"].get("fused") else "biased"
            flags += ["--epsilon", f"{tf_name}={l['hyper']['epsilon']}",
                      "--momentum", f"{tf_name}={l['hyper']['momentum']}",
                      "--variance", f"{tf_name}={variance}"]
            l["module"] = modules[0]
        subprocess.run([tfbn, "export", src, "-o", out, "--preset", "pytorch", "--force", "--verify", "-q"] + flags,
                       check=True)
        for l in layers:
            g = os.path.join(testdata, fixture, l["golden"])
            gd = os.path.join(dst, "goldens", os.path.basename(l["golden"]))
            os.makedirs(os.path.join(gd, "eigen"), exist_ok=True)
            shutil.copy(os.path.join(g, "input.npy"), gd)
            for name in os.listdir(os.path.join(g, "eigen")):
                shutil.copy(os.path.join(g, "eigen", name), os.path.join(gd, "eigen"))
            l["golden_dir"] = os.path.relpath(gd, dst)
            count += 1
        json.dump({"fixture": fixture, "layers": layers}, open(os.path.join(dst, "layers.json"), "w"), indent=1)
    print(f"prepared {count} layers in {out_dir}")


def ulp_of_max(expected, actual, also=None):
    """max |a - e| in ULPs (float32) of the largest finite magnitude of e
    (and of `also`, the other operands of an update)."""
    import numpy as np

    e = expected.astype(np.float64)
    a = actual.astype(np.float64)
    pool = [e] + ([np.asarray(also, dtype=np.float64)] if also is not None else [])
    finite = np.concatenate([np.abs(v[np.isfinite(v)]).ravel() for v in pool])
    scale = float(finite.max()) if finite.size else 0.0
    unit = float(np.spacing(np.float32(scale))) if scale > 0 else float(np.spacing(np.float32(0)))
    diff = np.abs(a - e)
    if np.isnan(diff).any() and not np.array_equal(np.isnan(a), np.isnan(e)):
        return float("inf"), float("inf")
    diff = np.nan_to_num(diff, nan=0.0)
    return float(diff.max() / unit) if diff.size else 0.0, float(diff.max()) if diff.size else 0.0


def check(out_dir, devices, log):
    import numpy as np
    import torch
    from safetensors import safe_open
    from safetensors.torch import load_file

    if "cuda" in devices and not torch.cuda.is_available():
        print("CUDA asked for but not available")
        return 1
    print(f"torch {torch.__version__}; devices: {', '.join(devices)}"
          + (f"; GPU: {torch.cuda.get_device_name(0)}" if "cuda" in devices else ""))
    # TF32 would change float32 convolutions, not batch norm; keep it off anyway.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    failures = 0
    rows = []
    worst = {}
    for fixture in sorted(os.listdir(out_dir)):
        lj = os.path.join(out_dir, fixture, "layers.json")
        if not os.path.exists(lj):
            continue
        spec = json.load(open(lj))
        path = os.path.join(out_dir, fixture, "pytorch.safetensors")
        state = load_file(path)
        with safe_open(path, framework="pt") as f:
            meta = f.metadata()
        for l in spec["layers"]:
            m = l["module"]
            eps = float(meta[f"tfbn.layer.{m}.epsilon"])
            mom = float(meta[f"tfbn.layer.{m}.momentum_torch"])
            conv = meta[f"tfbn.layer.{m}.moving_variance"]
            if abs(eps - l["hyper"]["epsilon"]) > 1e-9 * eps or abs((1 - mom) - l["hyper"]["momentum"]) > 1e-12:
                rows.append((fixture, l["name"], "-", "metadata", f"epsilon {eps} / momentum_torch {mom} disagree with the model", False))
                failures += 1
                continue
            axis = l["hyper"]["axis"][0]
            gd = os.path.join(out_dir, fixture, l["golden_dir"])
            x = np.load(os.path.join(gd, "input.npy"))
            golden = {n[:-4]: np.load(os.path.join(gd, "eigen", n)) for n in os.listdir(os.path.join(gd, "eigen"))
                      if n.endswith(".npy")}
            rank = x.ndim
            cls = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d, 5: torch.nn.BatchNorm3d}[rank]
            sd = {k[len(m) + 1:]: v for k, v in state.items() if k.startswith(m + ".")}
            for dev in devices:
                bn = cls(l["channels"], eps=eps, momentum=mom)
                missing = bn.load_state_dict(sd, strict=True)
                del missing
                bn = bn.to(dev)
                xt = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, axis, 1))).to(dev)
                checks = []
                bn.eval()
                with torch.no_grad():
                    y = np.moveaxis(bn(xt).cpu().numpy(), 1, axis)
                checks.append(("inference y", golden["inference_y"], y))
                if not l["hyper"].get("renorm"):
                    bn.train()
                    with torch.no_grad():
                        y = np.moveaxis(bn(xt).cpu().numpy(), 1, axis)
                    checks.append(("training y", golden["training_y"], y))
                    # The moving statistics are a weighted sum of the old value
                    # and the batch statistic; their rounding is relative to
                    # the larger of those, not to the (possibly cancelling) sum.
                    reduce = tuple(i for i in range(rank) if i != axis)
                    xd = x.astype(np.float64)
                    b_mean = xd.mean(axis=reduce)
                    b_var = xd.var(axis=reduce, ddof=1) if x.size > l["channels"] else xd.var(axis=reduce)
                    old_mean = sd["running_mean"].numpy()
                    old_var = sd["running_var"].numpy()
                    checks.append(("running_mean", golden["training_moving_mean"], bn.running_mean.cpu().numpy(),
                                   np.concatenate([b_mean, old_mean])))
                    if conv == "bessel":
                        checks.append(("running_var", golden["training_moving_variance"], bn.running_var.cpu().numpy(),
                                       np.concatenate([b_var, old_var])))
                    else:
                        u, _ = ulp_of_max(golden["training_moving_variance"], bn.running_var.cpu().numpy())
                        rows.append((fixture, l["name"], dev, "running_var", f"{u:.0f} ulp-of-max: TF stores the biased variance "
                                     f"({conv}), torch the unbiased one: not comparable, as the metadata says", True))
                for what, e, a, *also in checks:
                    u, d = ulp_of_max(e, a, also[0] if also else None)
                    ok = u <= BUDGET_ULP_OF_MAX
                    failures += 0 if ok else 1
                    key = (dev, what)
                    worst[key] = max(worst.get(key, 0.0), u)
                    rows.append((fixture, l["name"], dev, what, f"{u:.0f} ulp-of-max (max |Δ| {d:.2e})", ok))
    lines = [f"{'ok  ' if r[5] else 'FAIL'} {r[0]:<26} {r[1]:<28} {r[2]:<5} {r[3]:<13} {r[4]}" for r in rows]
    if log:
        with open(log, "w") as f:
            f.write("\n".join(lines) + "\n")
    for line in lines:
        if not log or line.startswith("FAIL"):
            print(line)
    print()
    print("worst case per device and output (ULPs of the array's largest magnitude; budget "
          f"{BUDGET_ULP_OF_MAX}):")
    for (dev, what), u in sorted(worst.items()):
        print(f"  {dev:<5} {what:<13} {u:.0f}")
    print(f"{len(rows)} checks, {failures} failed")
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("out_dir")
    p.add_argument("--tfbn", default="target/release/tfbn")
    p.add_argument("--testdata", default="testdata")
    c = sub.add_parser("check")
    c.add_argument("out_dir")
    c.add_argument("--device", choices=["cpu", "cuda", "all"], default="cpu")
    c.add_argument("--log", help="write every check's line here (stdout then shows failures only)")
    args = ap.parse_args()
    if args.cmd == "prepare":
        prepare(args.out_dir, args.tfbn, args.testdata)
        return 0
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    return check(args.out_dir, devices, args.log)


if __name__ == "__main__":
    sys.exit(main())
