"""Frozen GraphDef fixtures: variables folded into Const nodes, the way
inference graphs are shipped (`frozen.pb`, a binary GraphDef).

  frozen_tf2  tf_keras functional model; `tf.function` concrete function
              (training=False) frozen with convert_variables_to_constants_v2:
              FusedBatchNormV3 NHWC (`bn_fused`), FusedBatchNormV3 NCHW
              (`bn_nchw`, axis=1 after a Permute), and a rank-2 BN that
              tf_keras builds from tf.nn.batch_normalization (`bn_dense`:
              Add/Rsqrt/Mul/Sub nodes, epsilon in a Const).
  frozen_tf1  tf.compat.v1 graph (reference variables, TF1 Switch/Merge
              control flow) frozen with
              tf.compat.v1.graph_util.convert_variables_to_constants:
              tf.compat.v1.layers.batch_normalization fused NHWC with
              `training` a placeholder_with_default(False) (so a cond with a
              training and an inference FusedBatchNormV3), fused NCHW
              (training=False), non-fused rank 2 (training=False), and a
              hand-written tf.nn.batch_normalization on variables
              `hand/{scale,offset,pop_mean,pop_var}`.

Truth per BN: the Const nodes holding gamma/beta/mean/variance (found by
walking the BN op's inputs back through Identity/Switch, and asserted to hold
exactly the live variable's value), epsilon (FusedBatchNormV3's attr, or the
Const added to the variance), data_format; goldens are the frozen graph's own
BN output for a seeded input fed at the BN's input tensor (inference).

Runs with TF_USE_LEGACY_KERAS=1.
"""

import os

import numpy as np
import tensorflow as tf
import tf_keras as K

from . import common

FIXTURES = ("frozen_tf2", "frozen_tf1")
SEED = 4242
v1 = tf.compat.v1


# ---------------------------------------------------------------- graph walking


def node_map(gd):
    return {n.name: n for n in gd.node}


def base(name):
    return name.lstrip("^").split(":")[0]


def trace_const(nodes, tensor):
    """Follow Identity / Switch / ReadVariableOp inputs back to a Const."""
    n = nodes[base(tensor)]
    path = []
    while n.op != "Const":
        assert n.op in ("Identity", "Switch", "ReadVariableOp", "Enter"), (tensor, n.op, path)
        path.append(n.name)
        n = nodes[base(n.input[0])]
    return n.name


def const_value(nodes, name):
    return tf.make_ndarray(nodes[name].attr["value"].tensor)


def fused_entry(nodes, node_name):
    n = nodes[node_name]
    assert n.op == "FusedBatchNormV3", n.op
    consts = {role: trace_const(nodes, n.input[i]) for i, role in enumerate(("gamma", "beta", "moving_mean", "moving_variance"), 1)}
    return {
        "op": "FusedBatchNormV3",
        "node": node_name,
        "input_tensor": n.input[0] if ":" in n.input[0] else n.input[0] + ":0",
        "output_tensor": node_name + ":0",
        "consts": consts,
        "epsilon": float(n.attr["epsilon"].f),
        "epsilon_key": None,
        "data_format": n.attr["data_format"].s.decode(),
        "is_training": bool(n.attr["is_training"].b),
    }


def nn_entry(nodes, scope):
    """tf.nn.batch_normalization(x, mean, variance, offset, scale, eps) in
    the graph: add = variance + eps; Rsqrt; mul = Rsqrt * scale;
    mul_1 = x * mul; mul_2 = mean * mul; sub = offset - mul_2;
    add_1 = mul_1 + sub."""
    add, mul, mul_1, mul_2, sub, add_1 = (nodes[f"{scope}/{s}"] for s in ("add", "mul", "mul_1", "mul_2", "sub", "add_1"))
    assert add.op == "AddV2" and nodes[base(add.input[1])].op == "Const", add
    assert nodes[base(mul.input[0])].op == "Rsqrt" and base(mul_1.input[1]) == mul.name, (mul, mul_1)
    assert base(mul_2.input[1]) == mul.name and base(sub.input[1]) == mul_2.name, (mul_2, sub)
    assert [base(i) for i in add_1.input] == [mul_1.name, sub.name], add_1
    eps_key = base(add.input[1])
    x = mul_1.input[0]
    return {
        "op": "batch_normalization",
        "node": add_1.name,
        "input_tensor": x if ":" in x else x + ":0",
        "output_tensor": add_1.name + ":0",
        "consts": {
            "gamma": trace_const(nodes, mul.input[1]),
            "beta": trace_const(nodes, sub.input[0]),
            "moving_mean": trace_const(nodes, mul_2.input[0]),
            "moving_variance": trace_const(nodes, add.input[0]),
        },
        "epsilon": float(const_value(nodes, eps_key)),
        "epsilon_key": eps_key,
        "data_format": None,
        "is_training": False,
    }


# ---------------------------------------------------------------- models


def random_values(name, shape, role):
    rng = np.random.default_rng(common.layer_seed("frozen", f"{name}/{role}"))
    if role == "gamma":
        v = rng.uniform(0.5, 1.5, shape)
    elif role in ("beta", "moving_mean"):
        v = rng.normal(0.0, 0.8, shape)
    else:
        v = rng.uniform(0.3, 2.5, shape)
    return v.astype(np.float32)


def build_tf2():
    """-> (graph_def, [(layer name, api, variables {role: (var name, value)}, locate)])"""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    K.backend.clear_session()
    K.utils.set_random_seed(SEED)
    L = K.layers
    inp = K.Input((6, 6, 3), name="image")
    h = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
    h = L.BatchNormalization(name="bn_fused", epsilon=1e-2, momentum=0.9)(h)
    h = L.Permute((3, 1, 2), name="to_nchw")(h)
    h = L.BatchNormalization(axis=1, name="bn_nchw", epsilon=2e-3, momentum=0.95)(h)
    h = L.GlobalAveragePooling2D(data_format="channels_first", name="pool")(h)
    h = L.Dense(5, name="fc")(h)
    h = L.BatchNormalization(name="bn_dense", epsilon=2e-5, momentum=0.97)(h)
    out = L.Dense(3, name="logits")(h)
    model = K.Model(inp, out, name="frozen_tf2")
    layers = []
    for name in ("bn_fused", "bn_nchw", "bn_dense"):
        layer = model.get_layer(name)
        vals = {}
        for role in ("gamma", "beta", "moving_mean", "moving_variance"):
            v = getattr(layer, role)
            v.assign(random_values(name, tuple(v.shape), role))
            vals[role] = (v.name.split(":")[0], v.numpy())
        expect_fused = layer.fused
        # tf.function traces the model call under the model's name scope.
        locate = (lambda nodes, n=name: fused_entry(nodes, f"frozen_tf2/{n}/FusedBatchNormV3")) if expect_fused else (
            lambda nodes, n=name: nn_entry(nodes, f"frozen_tf2/{n}/batchnorm")
        )
        layers.append((name, "tf-keras", vals, locate, {"momentum": float(layer.momentum), "fused": bool(layer.fused)}))
    fn = tf.function(lambda x: model(x, training=False))
    cf = fn.get_concrete_function(tf.TensorSpec([None, 6, 6, 3], tf.float32, name="image"))
    frozen = convert_variables_to_constants_v2(cf)
    gd = frozen.graph.as_graph_def()
    assert not gd.library.function, "frozen TF2 graph still has functions"
    io = {"inputs": [t.name for t in frozen.inputs], "outputs": [t.name for t in frozen.outputs]}
    return gd, layers, io


def build_tf1():
    from tensorflow.python.ops import control_flow_util

    g = tf.Graph()
    old_cf = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    v1.disable_resource_variables()
    try:
        with g.as_default():
            v1.set_random_seed(SEED)
            x = v1.placeholder(tf.float32, [None, 6, 6, 3], name="x")
            training = v1.placeholder_with_default(False, [], name="is_training")
            h = v1.layers.conv2d(x, 8, 3, padding="same", name="conv1")
            h = v1.layers.batch_normalization(h, epsilon=1e-2, momentum=0.9, training=training, fused=True, name="bn_fused")
            h = tf.transpose(h, [0, 3, 1, 2], name="to_nchw")
            h = v1.layers.batch_normalization(h, axis=1, epsilon=2e-3, momentum=0.95, training=False, fused=True, name="bn_nchw")
            h = tf.reduce_mean(h, [2, 3], name="pool")
            h = v1.layers.dense(h, 5, name="fc")
            h = v1.layers.batch_normalization(h, epsilon=3e-5, momentum=0.97, training=False, fused=False, name="bn_dense")
            with v1.variable_scope("hand"):
                scale = v1.get_variable("scale", [5], initializer=v1.ones_initializer())
                offset = v1.get_variable("offset", [5], initializer=v1.zeros_initializer())
                pop_mean = v1.get_variable("pop_mean", [5], initializer=v1.zeros_initializer(), trainable=False)
                pop_var = v1.get_variable("pop_var", [5], initializer=v1.ones_initializer(), trainable=False)
            h = tf.nn.batch_normalization(h, pop_mean, pop_var, offset, scale, 1e-4, name="hand_bn")
            y = tf.identity(v1.layers.dense(h, 3, name="logits"), name="y")
            gv = {v.op.name: v for v in v1.global_variables()}
            roles = {
                "bn_fused": ("bn_fused/gamma", "bn_fused/beta", "bn_fused/moving_mean", "bn_fused/moving_variance"),
                "bn_nchw": ("bn_nchw/gamma", "bn_nchw/beta", "bn_nchw/moving_mean", "bn_nchw/moving_variance"),
                "bn_dense": ("bn_dense/gamma", "bn_dense/beta", "bn_dense/moving_mean", "bn_dense/moving_variance"),
                "hand_bn": ("hand/scale", "hand/offset", "hand/pop_mean", "hand/pop_var"),
            }
            with v1.Session(graph=g) as sess:
                sess.run(v1.global_variables_initializer())
                layers = []
                for name, vnames in roles.items():
                    vals = {}
                    for role, vn in zip(("gamma", "beta", "moving_mean", "moving_variance"), vnames):
                        v = gv[vn]
                        v.load(random_values(name, tuple(v.shape.as_list()), role), sess)
                        vals[role] = (vn, sess.run(v))
                    layers.append((name, vals))
                assert not any(type(v).__name__ == "ResourceVariable" for v in gv.values()), "want reference variables"
                gd = v1.graph_util.convert_variables_to_constants(sess, g.as_graph_def(), ["y"])
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = old_cf
        v1.enable_resource_variables()

    def fused_infer(n):
        def locate(nodes):
            # the inference branch of the cond: the FusedBatchNormV3 with is_training=False
            cands = [x.name for x in nodes.values() if x.op == "FusedBatchNormV3" and x.name.startswith(n + "/") and not x.attr["is_training"].b]
            assert len(cands) == 1, cands
            return fused_entry(nodes, cands[0])

        return locate

    extra = {
        "bn_fused": ("tf1-layers", fused_infer("bn_fused"), {"momentum": 0.9, "fused": True}),
        "bn_nchw": ("tf1-layers", fused_infer("bn_nchw"), {"momentum": 0.95, "fused": True}),
        "bn_dense": ("tf1-layers", lambda nodes: nn_entry(nodes, "bn_dense/batchnorm"), {"momentum": 0.97, "fused": False}),
        "hand_bn": ("nn", lambda nodes: nn_entry(nodes, "hand_bn"), {"momentum": None, "fused": False}),
    }
    out = [(name, extra[name][0], vals, extra[name][1], extra[name][2]) for name, vals in layers]
    return gd, out, {"inputs": ["x:0", "is_training:0"], "outputs": ["y:0"]}


# ---------------------------------------------------------------- build


def build(fixture, fixture_dir):
    if fixture == "frozen_tf2":
        gd, layers, io = build_tf2()
        writer = "convert_variables_to_constants_v2(tf.function concrete function of a tf_keras model, training=False)"
        keras_version = K.__version__
    else:
        gd, layers, io = build_tf1()
        writer = "tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph_def, ['y'])"
        keras_version = K.__version__  # tf.compat.v1.layers are tf_keras's legacy_tf_layers
    tf.io.write_graph(gd, fixture_dir, "frozen.pb", as_text=False)
    # Re-read what was written: the truth is about the file.
    gd = tf.compat.v1.GraphDef()
    with open(os.path.join(fixture_dir, "frozen.pb"), "rb") as f:
        gd.ParseFromString(f.read())
    nodes = node_map(gd)
    consts = {n.name: tf.make_ndarray(n.attr["value"].tensor) for n in gd.node if n.op == "Const"}
    values = {k: v for k, v in consts.items() if v.dtype.kind in "fiub"}
    variables = []
    blob = bytearray()
    for key in sorted(values):
        arr = np.asarray(values[key])
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        variables.append({"key": key, "dtype": "bool" if arr.dtype.kind == "b" else arr.dtype.name, "shape": [int(d) for d in arr.shape], "offset": len(blob), "nbytes": len(raw)})
        blob += raw
    os.makedirs(os.path.join(fixture_dir, "expected"), exist_ok=True)
    with open(os.path.join(fixture_dir, "expected", "variables.bin"), "wb") as f:
        f.write(bytes(blob))

    g = tf.Graph()
    with g.as_default():
        tf.graph_util.import_graph_def(gd, name="")
    entries = []
    layer_keys = set()
    for name, api, vals, locate, extra in layers:
        e = locate(nodes)
        variables_ref = {}
        for role, key in e["consts"].items():
            var_name, value = vals[role]
            got = consts[key]
            assert got.dtype == value.dtype and got.shape == value.shape and np.array_equal(got, value), (fixture, name, role, key)
            variables_ref[role] = {"key": key, "name": var_name}
            layer_keys.add(key)
        xshape = g.get_tensor_by_name(e["input_tensor"]).shape.as_list()
        rank = len(xshape)
        if e["data_format"] is not None:
            axis = e["data_format"].index("C")
        else:
            axis = rank - 1
        hyper = common.hyper_dict(e["epsilon"], 0.0, axis, rank, True, True, extra["fused"], False, None)
        hyper["momentum"] = extra["momentum"]  # not in the graph: what the layer was built with (null for hand-written)
        hyper["data_format"] = e["data_format"]
        hyper["is_training"] = e["is_training"]
        hyper["epsilon_key"] = e["epsilon_key"]
        entry = common.layer_entry(fixture_dir, fixture, name, api, variables_ref, hyper, xshape)
        entry.update({"op": e["op"], "node": e["node"], "input_tensor": e["input_tensor"], "output_tensor": e["output_tensor"]})
        if e["epsilon_key"]:
            layer_keys.add(e["epsilon_key"])
        entries.append(entry)
    other = sorted(set(values) - layer_keys)
    manifest = {
        "fixture": fixture,
        "open": "frozen.pb",
        "variables_prefix": None,
        "writer": writer,
        "format": "frozen_graphdef",
        "tf_version": tf.__version__,
        "keras_version": keras_version,
        "graph_inputs": io["inputs"],
        "graph_outputs": io["outputs"],
        "variables": variables,
        "layers": entries,
        "non_layer": {"bookkeeping": [], "ema": [], "optimizer": [], "other": other},
        "node_count": len(gd.node),
        "ops": sorted({n.op for n in gd.node}),
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    write_readme(fixture, fixture_dir, manifest)


def write_readme(fixture, fixture_dir, m):
    title = {
        "frozen_tf2": (
            f"tf_keras {m['keras_version']} functional model (TF {m['tf_version']}), BN variables set to seeded random "
            "values, traced as `tf.function(lambda x: model(x, training=False))`, frozen with "
            "`convert_variables_to_constants_v2` and written with `tf.io.write_graph(..., 'frozen.pb', as_text=False)`. "
            "Variable reads became `Identity(Const)`; the Const node names end in `/resource`."
        ),
        "frozen_tf1": (
            f"tf.compat.v1 graph (TF {m['tf_version']}, reference variables, TF1 Switch/Merge control flow), BN variables "
            "set to seeded random values, frozen with `tf.compat.v1.graph_util.convert_variables_to_constants` "
            "and written with `tf.io.write_graph(..., 'frozen.pb', as_text=False)`. `bn_fused` is called with "
            "`training=placeholder_with_default(False)`, so its cond keeps both a training (`is_training=true`) and "
            "an inference FusedBatchNormV3, both reading the same Consts through `Switch` nodes; the manifest names the "
            "inference one."
        ),
    }[fixture]
    lines = [
        f"graph inputs {m['graph_inputs']}, outputs {m['graph_outputs']}; {m['node_count']} nodes; ops: {', '.join(m['ops'])}",
        "key = the Const node's name; `variables` lists every numeric Const of the graph (bytes in variables.bin)",
        "goldens: inference only (`inference_y.npy`): the frozen graph imported in a fresh graph with the BN's input "
        "tensor mapped to a placeholder fed with `input.npy`, fetching the BN's output tensor (eigen: "
        "TF_ENABLE_ONEDNN_OPTS=0, onednn: =1)",
    ]
    for l in m["layers"]:
        h = l["hyper"]
        lines.append(
            "`%s` (%s, %s `%s`): C=%d, epsilon=%r (%s), data_format %s; input %s `%s` -> `%s`; consts: %s"
            % (
                l["name"], l["api"], l["op"], l["node"], l["channels"], h["epsilon"],
                "attr" if h["epsilon_key"] is None else f"Const `{h['epsilon_key']}`", h["data_format"],
                l["input_shape"], l["input_tensor"], l["output_tensor"],
                ", ".join(f"{r} `{v['key']}`" for r, v in l["variables"].items()),
            )
        )
    text = [f"# {fixture}", "", title, ""] + [f"- {x}" for x in lines] + [
        "",
        "Every file here was written by TensorFlow (see testdata/README.md, \"Frozen GraphDefs\").",
        "",
        f"regenerate with: .venv/bin/python scripts/gen_testdata.py --only {fixture}",
        "",
    ]
    with open(os.path.join(fixture_dir, "README.md"), "w") as f:
        f.write("\n".join(text))


# ---------------------------------------------------------------- goldens


def goldens(fixture, fixture_dir, onednn):
    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    gd = tf.compat.v1.GraphDef()
    with open(os.path.join(fixture_dir, manifest["open"]), "rb") as f:
        gd.ParseFromString(f.read())
    for layer in manifest["layers"]:
        x = common.load_input(fixture_dir, layer)
        g = tf.Graph()
        with g.as_default():
            ph = v1.placeholder(tf.float32, [None] + layer["input_shape"][1:], name="tfbn_golden_input")
            (y,) = tf.graph_util.import_graph_def(
                gd, input_map={layer["input_tensor"]: ph}, return_elements=[layer["output_tensor"]], name="frozen"
            )
        with v1.Session(graph=g) as sess:
            out = sess.run(y, {ph: x})
        assert out.dtype == np.float32 and out.shape == x.shape, (layer["name"], out.dtype, out.shape)
        common.write_mode_goldens(
            common.mode_dir(fixture_dir, layer, onednn), {"inference_y": out}, common.golden_env(layer["api"], layer["name"], onednn)
        )
