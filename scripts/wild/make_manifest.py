#!/usr/bin/env python3
"""Write testdata/wild/artifacts.json from scripts/wild/corpus.py and the
downloaded registry files.

Every digest, size and writer version in the manifest is computed here from
the files themselves. The dists must already sit in <cache>/dist (or in the
folder --dist names): after changing corpus.py, fetch a new one by hand with
`pip download --no-deps -d <cache>/dist 'pkg==ver'`, then

    .venv/bin/python scripts/wild/make_manifest.py [--dist DIR]

Needs TensorFlow's protobuf classes only to read the writer version out of
.meta / saved_model.pb files, and h5py for .h5 attributes.
"""

import argparse
import hashlib
import io
import json
import os
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import corpus  # noqa: E402


def default_cache():
    c = os.environ.get("TFBN_WILD_CACHE")
    if c:
        return c
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "tfbn", "wild")


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def writer_of(art, z):
    """The writer version, read from the file that records it."""
    fmt = art["format"]
    if fmt == "checkpoint_v2":
        from tensorflow.core.protobuf import meta_graph_pb2
        meta = [m for m in z.namelist() if m == art["member"] + ".meta"]
        if not meta:
            return "unknown"
        mg = meta_graph_pb2.MetaGraphDef()
        mg.ParseFromString(z.read(meta[0]))
        v = mg.meta_info_def.tensorflow_version
        if not art["has_graph"]:
            return f"TF {v} (read from the .meta of the same archive folder, which this view leaves out)"
        return f"TF {v}"
    if fmt == "saved_model":
        from tensorflow.core.protobuf import saved_model_pb2
        sm = saved_model_pb2.SavedModel()
        sm.ParseFromString(z.read(art["member"] + "saved_model.pb"))
        return f"TF {sm.meta_graphs[0].meta_info_def.tensorflow_version}"
    if fmt == "keras_h5":
        import h5py
        with h5py.File(io.BytesIO(z.read(art["member"])), "r") as h:
            kv = h.attrs.get("keras_version")
            be = h.attrs.get("backend")
        kv = kv.decode() if isinstance(kv, bytes) else kv
        be = be.decode() if isinstance(be, bytes) else be
        return f"Keras {kv} ({be} backend; TF version not recorded in the file)"
    return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dist", default=os.path.join(default_cache(), "dist"))
    ap.add_argument("--out", default=os.path.join(ROOT, "testdata", "wild", "artifacts.json"))
    a = ap.parse_args()
    out = []
    for art in corpus.ARTIFACTS:
        path = os.path.join(a.dist, art["dist"])
        data = open(path, "rb").read()
        z = zipfile.ZipFile(io.BytesIO(data))
        files = []
        for member, dest in art["extract"].items():
            b = z.read(member)
            files.append({"member": member, "path": dest, "size": len(b), "sha256": sha256(b)})
        e = {k: art[k] for k in ("id", "package", "version", "dist")}
        e["sha256"] = sha256(data)
        e["size"] = len(data)
        e["member"] = art["member"]
        e["open"] = art["open"]
        e["format"] = art["format"]
        e["writer"] = writer_of(art, z)
        e["has_graph"] = art["has_graph"]
        e["class"] = art["class"]
        e["notes"] = art["notes"]
        e["files"] = files
        out.append(e)
    with open(a.out, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True, ensure_ascii=False)
        f.write("\n")
    print(f"wrote {a.out}: {len(out)} artifacts")


if __name__ == "__main__":
    main()
