#!/usr/bin/env bash
# Runs one cargo-fuzz target for a while, seeded from testdata/.
#
#   scripts/fuzz.sh TARGET SECONDS [extra libFuzzer flags…]
#   scripts/fuzz.sh --seeds-only TARGET      (write the seed corpus only)
#
# Targets: table entries v1 checkpoint savedmodel graphdef frozen hdf5
# keras_config npy (their
# entry points and input layouts: fuzz/src/lib.rs). Needs a nightly
# toolchain and `cargo install cargo-fuzz --locked`.
#
# The seed corpus is built from the fixtures in testdata/ into
# fuzz/corpus/TARGET/seed-* (rebuilt each run; the fuzzer adds its own
# finds beside them; fuzz/corpus is not committed). Crashes land in
# fuzz/artifacts/TARGET/; minimise one with
#   cargo +nightly fuzz tmin TARGET fuzz/artifacts/TARGET/crash-…
# and, once fixed, copy it to tests/fuzz-regressions/TARGET/ so that
# `cargo test --test it fuzz_regressions` keeps running it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seeds_only=0
if [[ "${1:-}" == "--seeds-only" ]]; then
    seeds_only=1
    shift
fi
target="${1:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags]}"
case "$target" in
    table | entries | v1 | checkpoint | savedmodel | graphdef | frozen | hdf5 | keras_config | npy) ;;
    *)
        echo "fuzz.sh: unknown target '$target'" >&2
        exit 2
        ;;
esac

corpus="fuzz/corpus/$target"
mkdir -p "$corpus" "fuzz/artifacts/$target"
python3 - "$target" "$corpus" <<'PY'
"""Packs testdata/ fixtures into the input layouts of fuzz/src/lib.rs."""
import glob, os, struct, sys

target, out = sys.argv[1], sys.argv[2]
T = "testdata"

def read(p):
    with open(p, "rb") as f:
        return f.read()

def seed(name, data):
    with open(os.path.join(out, "seed-" + name), "wb") as f:
        f.write(data)

def varint(buf, i):
    v = s = 0
    while True:
        b = buf[i]; i += 1
        v |= (b & 0x7F) << s; s += 7
        if b < 0x80:
            return v, i

def block_entries(block):
    """(key, value) of one table block (prefix-compressed keys)."""
    n = struct.unpack("<I", block[-4:])[0]
    end = len(block) - 4 - 4 * n
    i, key, out = 0, b"", []
    while i < end:
        shared, i = varint(block, i)
        unshared, i = varint(block, i)
        vlen, i = varint(block, i)
        key = key[:shared] + block[i:i + unshared]; i += unshared
        out.append((key, block[i:i + vlen])); i += vlen
    return out

def table_entries(data):
    """Every (key, value) of an SSTable (the .index container)."""
    footer = data[-48:]
    _, j = varint(footer, 0); _, j = varint(footer, j)
    off, j = varint(footer, j); size, j = varint(footer, j)
    out = []
    for _, handle in block_entries(data[off:off + size]):
        o, k = varint(handle, 0); s, _ = varint(handle, k)
        out.extend(block_entries(data[o:o + s]))
    return out

def fixture(d):
    return os.path.basename(d.split("/")[1])

indexes = sorted(p for p in glob.glob(f"{T}/*/*/*.index") + glob.glob(f"{T}/*/*/*/*.index")
                 if os.path.getsize(p) < 64 * 1024)

if target == "table":
    for p in indexes:
        seed(fixture(p) + "-" + os.path.basename(p), read(p))
    seed("v1", read(f"{T}/tf1_v1_format/ckpt/model.ckpt"))
elif target == "v1":
    seed("v1", read(f"{T}/tf1_v1_format/ckpt/model.ckpt"))
elif target == "entries":
    for p in indexes:
        prefix = p[: -len(".index")]
        data = prefix + ".data-00000-of-00001"
        if not os.path.exists(data):
            continue
        recs = table_entries(read(p))[:255]
        body = bytes([len(recs)])
        for k, v in recs:
            if len(k) > 255 or len(v) > 65535:
                break
            body += bytes([len(k)]) + k + struct.pack("<H", len(v)) + v
        seed(fixture(p), body + read(data))
elif target == "checkpoint":
    for p in indexes:
        prefix = p[: -len(".index")]
        shards = sorted(glob.glob(glob.escape(prefix) + ".data-*-of-*"))
        if not shards or len(shards) > 4:
            continue
        datas = [read(s) for s in shards]
        if sum(map(len, datas)) > 64 * 1024:
            continue
        index = read(p)
        body = struct.pack("<I", len(index)) + index + bytes([len(datas) - 1])
        body += b"".join(struct.pack("<I", len(d)) for d in datas[:-1]) + b"".join(datas)
        seed(fixture(p), body)
elif target == "savedmodel":
    for i, name in enumerate(["tf2_16_savedmodel", "tfkeras_training_serving",
                              "keras3_saved_model", "tf2_12_savedmodel"]):
        d = f"{T}/{name}/savedmodel"
        pb = read(f"{d}/saved_model.pb")
        km = read(f"{d}/keras_metadata.pb") if os.path.exists(f"{d}/keras_metadata.pb") else b""
        seed(name, bytes([i]) + struct.pack("<I", len(pb)) + pb + km)
elif target == "graphdef":
    for i, name in enumerate(["tf1_trained", "tf1_handwritten"]):
        seed(name, bytes([i]) + read(f"{T}/{name}/ckpt/model.ckpt.meta"))
elif target == "frozen":
    for p in sorted(glob.glob(f"{T}/*/*.pb")):
        if os.path.basename(p) not in ("saved_model.pb", "keras_metadata.pb", "fingerprint.pb"):
            seed(fixture(p), read(p))
elif target == "hdf5":
    for p in sorted(glob.glob(f"{T}/*/*.h5") + glob.glob(f"{T}/*/*.keras")):
        if os.path.getsize(p) <= 100 * 1024:
            seed(fixture(p) + "-" + os.path.basename(p), read(p))
elif target == "keras_config":
    import json, zipfile
    # Keras 3 configs (config.json of .keras archives) go with the Keras 3
    # weights (selector 0); tf_keras ones (model_config of whole-model .h5
    # files, read here with h5py when it is installed) with selector 1.
    for p in sorted(glob.glob(f"{T}/*/*.keras")):
        with zipfile.ZipFile(p) as z:
            seed(fixture(p), b"\x00" + z.read("config.json"))
    try:
        import h5py
        for p in sorted(glob.glob(f"{T}/kfile_tfk_*/m.h5")):
            with h5py.File(p, "r") as f:
                cfg = f.attrs["model_config"]
            cfg = cfg.encode() if isinstance(cfg, str) else bytes(cfg)
            seed(fixture(p), b"\x01" + cfg)
    except ImportError:
        pass
elif target == "npy":
    seen = set()
    for p in sorted(glob.glob(f"{T}/**/*.npy", recursive=True)):
        data = read(p)
        head = data[:128]
        if len(data) > 8192 or head in seen:
            continue
        seen.add(head)
        seed(str(len(seen)), data)
print(f"fuzz.sh: {len(os.listdir(out))} inputs in {out}")
PY

if [[ "$seeds_only" == 1 ]]; then
    exit 0
fi
seconds="${2:?usage: scripts/fuzz.sh TARGET SECONDS [libFuzzer flags]}"
shift 2
exec cargo +nightly fuzz run "$target" "$PWD/$corpus" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 "$@"
