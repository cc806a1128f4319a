"""Small helpers shared by k2.py and k3.py (the rest comes from
scripts/gen/common.py, which works unchanged on TF 2.12 .. 2.16)."""

import os

import numpy as np
import tensorflow as tf

SAMPLE_SHAPE = (4, 4, 3)


def training_data(seed):
    """8 seeded samples of SAMPLE_SHAPE and integer labels in [0, 3)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.5, 2.0, size=(8,) + SAMPLE_SHAPE).astype(np.float32)
    y = rng.integers(0, 3, size=(8,)).astype(np.int64)
    return x, y


def write_readme(fixture_dir, fixture, title, lines):
    text = [f"# {fixture}", "", title, ""]
    text += [f"- {line}" for line in lines]
    text += [
        "",
        "Every file here was written by the TensorFlow release named in",
        "expected/manifest.json (`tf_version`), in its own venv (see the",
        "\"Older TensorFlow releases\" section of testdata/README.md for the",
        "manifest schema and the golden layout).",
        "",
        "regenerate with: scripts/setup-tf-versions.sh && "
        f".venv/bin/python scripts/gen_versions.py --only {fixture}",
        "",
    ]
    with open(os.path.join(fixture_dir, "README.md"), "w") as f:
        f.write("\n".join(text))


def layer_lines(layers):
    out = []
    for l in layers:
        h = l["hyper"]
        flags = [k for k in ("renorm",) if h[k]] + [k + "=False" for k in ("center", "scale") if not h[k]]
        out.append(
            "layer `%s`: C=%d, epsilon=%g, momentum=%g, axis=%s, fused=%s%s; input %s; keys: gamma `%s`, "
            "moving_mean `%s`"
            % (
                l["name"],
                l["channels"],
                h["epsilon"],
                h["momentum"],
                h["axis"],
                h["fused"],
                "".join(", " + f for f in flags),
                l["input_shape"],
                (l["variables"]["gamma"] or {}).get("key"),
                l["variables"]["moving_mean"]["key"],
            )
        )
    return out


def slot_keys(prefix):
    """Checkpoint keys of the optimizer slot variables that TF's object graph
    at `prefix` lists (`slot_variables` of the optimizer nodes:
    `<var>/.OPTIMIZER_SLOT/optimizer/<slot>/...`). Keras 2 optimizers of
    TF <= 2.15 write their state as such slots; CheckpointView.match() pairs
    only the object graph's children, so those keys need this."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    reader = tf.train.load_checkpoint(prefix)
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    out = set()
    for node in graph.nodes:
        for sv in node.slot_variables:
            attrs = [a for a in graph.nodes[sv.slot_variable_node_id].attributes if a.name == "VARIABLE_VALUE"]
            assert len(attrs) == 1, sv
            out.add(attrs[0].checkpoint_key)
    return out
