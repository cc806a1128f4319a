"""The `tf1_handwritten` fixture: batch norm written by hand, the way TF1-era
research code did it, with its own variable names (no Keras layer object).

Ground truth for graph-based layer discovery: the BN ops in the `.meta` graph
(`tf.nn.batch_normalization`'s Rsqrt/Mul/Sub/Add decomposition and
`FusedBatchNormV3`) must be traced back to variables called `scale`,
`offset`, `pop_mean`, `pop_var`, `s`, `o`, `m`, `v`.

Built like TF1 code was: reference variables (`VariableV2`, `use_resource=False`)
and TF1 control flow (`tf.compat.v1.cond` as Switch/Merge nodes in the graph,
not a functional `If`). Imported by gen.tf1 (group tf1, TF_USE_LEGACY_KERAS=1).
"""

import contextlib
import os
import re

import numpy as np
import tensorflow as tf
from tensorflow.python.ops import control_flow_util
from tensorflow.python.training.saving import saveable_object_util

from . import common

v1 = tf.compat.v1
SEED = 4321
STEPS = 3
TRAIN_BATCH = 8
LR = 0.1

# scope -> how the layer is written (also the manifest's hyper-parameters).
LAYERS = {
    "conv1_bn": {"kind": "nn", "decay": 0.9, "eps": 1e-4, "scale": True},
    "raw_fused": {"kind": "fused", "decay": 0.9, "eps": 2e-3, "scale": True},
    "fc_bn": {"kind": "nn", "decay": 0.95, "eps": 1e-3, "scale": False},
}


@contextlib.contextmanager
def tf1_control_flow():
    """tf.compat.v1.cond builds Switch/Merge (TF1 control flow) while active.

    TF2 behaviour builds a functional If with the branches in the graph's
    function library; TF1-era graphs (and checkpoints' .meta files) have the
    branch ops as ordinary nodes under `<scope>/cond/`."""
    old = control_flow_util.ENABLE_CONTROL_FLOW_V2
    control_flow_util.ENABLE_CONTROL_FLOW_V2 = False
    try:
        yield
    finally:
        control_flow_util.ENABLE_CONTROL_FLOW_V2 = old


def var_name(v):
    name = v.name
    return name[:-2] if name.endswith(":0") else name


def saver_key(v):
    d = saveable_object_util.op_list_to_dict([v])
    assert len(d) == 1, d
    return next(iter(d))


# ---------------------------------------------------------------- the hand-written layers


def nn_bn(x, scope, is_training, decay, eps, scale=True, with_stats=False):
    """Classic TF1 hand-written batch norm: tf.nn.moments + manual moving
    averages + tf.nn.batch_normalization, switched by tf.cond(is_training)."""
    c = int(x.shape[-1])
    axes = list(range(x.shape.ndims - 1))
    with v1.variable_scope(scope, use_resource=False):
        gamma = v1.get_variable("scale", [c], initializer=v1.ones_initializer()) if scale else None
        beta = v1.get_variable("offset", [c], initializer=v1.zeros_initializer())
        pop_mean = v1.get_variable("pop_mean", [c], initializer=v1.zeros_initializer(), trainable=False)
        pop_var = v1.get_variable("pop_var", [c], initializer=v1.ones_initializer(), trainable=False)

        def train():
            batch_mean, batch_var = tf.nn.moments(x, axes)
            train_mean = v1.assign(pop_mean, pop_mean * decay + batch_mean * (1 - decay))
            train_var = v1.assign(pop_var, pop_var * decay + batch_var * (1 - decay))
            with tf.control_dependencies([train_mean, train_var]):
                y = tf.nn.batch_normalization(x, batch_mean, batch_var, beta, gamma, eps)
            return (y, batch_mean, batch_var) if with_stats else y

        def infer():
            y = tf.nn.batch_normalization(x, pop_mean, pop_var, beta, gamma, eps)
            return (y, tf.identity(pop_mean), tf.identity(pop_var)) if with_stats else y

        out = v1.cond(is_training, train, infer)
    roles = {"gamma": gamma, "beta": beta, "moving_mean": pop_mean, "moving_variance": pop_var}
    return out, roles


def fused_bn(x, scope, is_training, decay, eps, scale=True, with_stats=False):
    """tf.compat.v1.nn.fused_batch_norm on hand-made variables s, o, m, v.
    Training: the op's own exponential average (exponential_avg_factor =
    1 - decay) assigned back to m and v; inference: is_training=False.
    with_stats: the cond returns (y, batch mean, batch variance) instead of y
    (ops inside a TF1 cond branch cannot be fetched; the goldens need them)."""
    assert scale
    c = int(x.shape[-1])
    with v1.variable_scope(scope, use_resource=False):
        s = v1.get_variable("s", [c], initializer=v1.ones_initializer())
        o = v1.get_variable("o", [c], initializer=v1.zeros_initializer())
        m = v1.get_variable("m", [c], initializer=v1.zeros_initializer(), trainable=False)
        v = v1.get_variable("v", [c], initializer=v1.ones_initializer(), trainable=False)

        def train():
            y, bm, bv = v1.nn.fused_batch_norm(
                x, s, o, mean=m, variance=v, epsilon=eps, is_training=True, exponential_avg_factor=1.0 - decay
            )
            with tf.control_dependencies([v1.assign(m, bm), v1.assign(v, bv)]):
                y = tf.identity(y)
            return (y, bm, bv) if with_stats else y

        def infer():
            y, bm, bv = v1.nn.fused_batch_norm(x, s, o, mean=m, variance=v, epsilon=eps, is_training=False)
            return (y, bm, bv) if with_stats else y

        out = v1.cond(is_training, train, infer)
    roles = {"gamma": s, "beta": o, "moving_mean": m, "moving_variance": v}
    return out, roles


def bn_layer(x, scope, is_training, with_stats=False):
    spec = LAYERS[scope]
    fn = nn_bn if spec["kind"] == "nn" else fused_bn
    return fn(x, scope, is_training, spec["decay"], spec["eps"], spec["scale"], with_stats)


def hyper_of(scope, rank):
    spec = LAYERS[scope]
    h = common.hyper_dict(
        spec["eps"], spec["decay"], rank - 1, rank, True, spec["scale"], spec["kind"] == "fused", False, None
    )
    if spec["kind"] == "nn":
        # The hand-written update: pop = pop*decay + batch*(1 - decay).
        h["nn_update"] = "interpolate"
    return h


def batch_stats_of(scope):
    spec = LAYERS[scope]
    if spec["kind"] == "nn":
        return {"source": "tf.nn.moments outputs (mean, variance)", "variance": "biased"}
    return {
        "source": "FusedBatchNormV3 outputs 1 (batch_mean) and 2 (batch_variance), exponential_avg_factor=%g"
        % np.float32(1.0 - spec["decay"]),
        "variance": "kernel-averaged",
    }


# ---------------------------------------------------------------- the model


def net():
    """conv1(8) -> conv1_bn -> relu -> conv2(12) -> raw_fused -> relu -> mean pool
    -> fc(6) -> fc_bn -> relu -> logits(3); all variables by get_variable."""
    x = v1.placeholder(tf.float32, [None, 6, 6, 3], name="images")
    labels = v1.placeholder(tf.int64, [None], name="labels")
    is_training = v1.placeholder_with_default(False, [], name="is_training")
    init = v1.truncated_normal_initializer(stddev=0.3, seed=SEED)
    layers = []

    def weights(scope, shape):
        with v1.variable_scope(scope, use_resource=False):
            w = v1.get_variable("weights", shape, initializer=init)
            b = v1.get_variable("biases", shape[-1:], initializer=v1.zeros_initializer())
        return w, b

    def bn(h, scope):
        y, roles = bn_layer(h, scope, is_training)
        layers.append((scope, roles, h.shape.as_list()))
        return y

    w, b = weights("conv1", [3, 3, 3, 8])
    h = tf.nn.conv2d(x, w, strides=1, padding="SAME") + b
    h = tf.nn.relu(bn(h, "conv1_bn"))
    w, b = weights("conv2", [3, 3, 8, 12])
    h = tf.nn.conv2d(h, w, strides=1, padding="SAME") + b
    h = tf.nn.relu(bn(h, "raw_fused"))
    h = tf.reduce_mean(h, axis=[1, 2])
    w, b = weights("fc", [12, 6])
    h = tf.nn.relu(bn(tf.matmul(h, w) + b, "fc_bn"))
    w, b = weights("logits", [6, 3])
    logits = tf.matmul(h, w) + b
    loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
    gs = v1.train.get_or_create_global_step()
    opt = v1.train.GradientDescentOptimizer(LR)
    train = opt.minimize(loss, global_step=gs)
    return dict(x=x, labels=labels, is_training=is_training, train=train, optimizer=opt, layers=layers)


def build(fixture, fixture_dir):
    ckpt_dir = os.path.join(fixture_dir, "ckpt")
    os.makedirs(ckpt_dir)
    prefix = os.path.join(ckpt_dir, "model.ckpt")
    graph = tf.Graph()
    with graph.as_default(), tf1_control_flow():
        v1.set_random_seed(SEED)
        m = net()
        saver = v1.train.Saver(save_relative_paths=True)
        rng = np.random.default_rng(SEED)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(STEPS):
                xb = rng.normal(0.5, 2.0, size=[TRAIN_BATCH, 6, 6, 3]).astype(np.float32)
                yb = rng.integers(0, 3, size=[TRAIN_BATCH]).astype(np.int64)
                sess.run(m["train"], {m["x"]: xb, m["labels"]: yb, m["is_training"]: True})
            saver.save(sess, prefix)

        kinds = {o.type for o in graph.get_operations()}
        assert "Switch" in kinds and "Merge" in kinds and not kinds & {"If", "StatelessIf"}, kinds
        assert "VariableV2" in kinds, kinds

        layer_list = []
        for scope, roles, shape in m["layers"]:
            variables = {
                role: None if v is None else common.var_ref(var_name(v), saver_key(v)) for role, v in roles.items()
            }
            hyper = hyper_of(scope, len(shape))
            api = LAYERS[scope]["kind"]
            layer_list.append(
                common.layer_entry(fixture_dir, fixture, scope, api, variables, hyper, shape, batch_stats_of(scope))
            )
        variables = common.dump_variables(prefix, fixture_dir)
        opt_keys = {saver_key(v) for v in m["optimizer"].variables()}
        all_model = set(saveable_object_util.op_list_to_dict(v1.global_variables()))
        other = all_model - opt_keys - {"global_step"}
        non_layer = common.classify(variables, layer_list, opt_keys, (), other)
        bn_nodes = bn_op_names(graph)

    manifest = {
        "fixture": fixture,
        "open": "ckpt/model.ckpt",
        "variables_prefix": "ckpt/model.ckpt",
        "writer": "tf.compat.v1.train.Saver V2",
        "format": "v2",
        "tf_version": tf.__version__,
        "keras_version": common.tf_keras_version(),
        "variables": variables,
        "layers": layer_list,
        "non_layer": non_layer,
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    files = sorted(os.listdir(ckpt_dir))
    lines = [
        "model: conv1(8) -> conv1_bn -> relu -> conv2(12) -> raw_fused -> relu -> mean pool -> fc(6) -> fc_bn "
        "-> relu -> logits(3); every variable made with `tf.compat.v1.get_variable(use_resource=False)` "
        "(reference variables, `VariableV2` nodes)",
        "`conv1_bn`, `fc_bn` (api `nn`): variables `<scope>/scale` (gamma; `fc_bn` has none), `<scope>/offset` "
        "(beta), `<scope>/pop_mean`, `<scope>/pop_var` (trainable=False); `tf.compat.v1.cond(is_training, ...)` "
        "with `is_training = placeholder_with_default(False, [])`; training branch: `tf.nn.moments(x, all "
        "axes but the last)`, `pop = assign(pop, pop*decay + batch*(1-decay))`, under those control "
        "dependencies `tf.nn.batch_normalization(x, batch_mean, batch_var, offset, scale, eps)`; inference "
        "branch: `tf.nn.batch_normalization(x, pop_mean, pop_var, offset, scale, eps)`",
        "`raw_fused` (api `fused`): variables `raw_fused/{s,o,m,v}`; training branch: "
        "`tf.compat.v1.nn.fused_batch_norm(x, s, o, mean=m, variance=v, is_training=True, "
        "exponential_avg_factor=1-decay)` with its outputs 1 and 2 assigned to m and v; inference branch: the "
        "same op with is_training=False",
        "TF1 control flow: the cond branches are Switch/Merge nodes under `<scope>/cond/` in the graph "
        "(built with control flow v2 off), no functional If",
        f"trained {STEPS} plain SGD steps (lr {LR}, no optimizer slots) with is_training=True; `global_step` "
        "is in the bundle",
        "manifest momentum = the hand-written decay (weight of the old value); `batch_stats`: nn layers the "
        "`tf.nn.moments` outputs (biased variance), raw_fused the op's outputs 1 and 2 (the kernel's "
        "exponential average, Bessel-corrected batch variance)",
        "goldens: the layer rebuilt alone with the same code under the same scope, restored with a Saver, "
        "`is_training` fed False / True (the assigns run in the same session.run)",
        "files in ckpt/: " + ", ".join(files),
        "regeneration reproduces the bundle and the goldens byte for byte; the .meta's `cond_context` "
        "collection lists each branch's external values in an order that varies between runs",
    ]
    for l in layer_list:
        h = l["hyper"]
        lines.append(
            "layer `%s` (%s): C=%d, epsilon=%g, momentum=%g, axis=%s, center=%s, scale=%s, fused=%s; input %s"
            % (
                l["name"],
                l["api"],
                l["channels"],
                h["epsilon"],
                h["momentum"],
                h["axis"],
                h["center"],
                h["scale"],
                h["fused"],
                l["input_shape"],
            )
        )
    for scope, n in bn_nodes.items():
        lines.append(
            "graph nodes of `%s` in the .meta: training branch `%s`, inference branch `%s`, moving-average "
            "assigns %s, cond output `%s`"
            % (scope, n["training"], n["inference"], ", ".join("`%s`" % a for a in n["assigns"]), n["merge"])
        )
    common.write_readme(
        fixture_dir,
        fixture,
        "TF1 graph mode, batch norm written by hand (no Keras layer) with custom variable names, saved with "
        "`tf.compat.v1.train.Saver()` (V2) including `model.ckpt.meta`.",
        lines,
    )
    return manifest


def bn_op_names(graph):
    """Per layer, the graph nodes that a graph-based discovery traces: the
    normalizing op of each cond branch (FusedBatchNormV3, or the Rsqrt of
    tf.nn.batch_normalization's decomposition), the moving-average assigns
    and the cond's Merge."""
    out = {}
    for scope in LAYERS:
        ops = [o for o in graph.get_operations() if o.name.startswith(scope + "/cond/")]
        norm = sorted(
            o.name
            for o in ops
            if o.type == "FusedBatchNormV3" or (o.type == "Rsqrt" and re.search(r"/batchnorm(_\d+)?/Rsqrt$", o.name))
        )
        assigns = sorted(o.name for o in ops if o.type == "Assign")
        merges = sorted(o.name for o in ops if o.type == "Merge")
        assert len(norm) == 2 and len(assigns) == 2 and len(merges) == 1, (scope, norm, assigns, merges)
        out[scope] = {"training": norm[0], "inference": norm[1], "assigns": assigns, "merge": merges[0]}
    return out


# ---------------------------------------------------------------- goldens


def goldens(fixture, fixture_dir, onednn):
    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    prefix = os.path.join(fixture_dir, manifest["variables_prefix"])
    for layer in manifest["layers"]:
        x = common.load_input(fixture_dir, layer)
        arrays = {}
        for training in (False, True):
            arrays.update(run_layer(layer, prefix, x, training))
        out = common.mode_dir(fixture_dir, layer, onednn)
        common.write_mode_goldens(out, arrays, common.golden_env(layer["api"], layer["name"], onednn))


def run_layer(layer, prefix, x, training):
    """The layer alone in a fresh graph, the same hand-written code under the
    same scope, variables restored from the checkpoint with a Saver."""
    scope = layer["name"]
    graph = tf.Graph()
    with graph.as_default(), tf1_control_flow():
        ph = v1.placeholder(tf.float32, x.shape, name="x")
        is_training = v1.placeholder_with_default(False, [], name="is_training")
        (y, bm, bv), roles = bn_layer(ph, scope, is_training, with_stats=True)
        common.check_hyper(layer, hyper_of(scope, x.ndim))
        assert layer["api"] == LAYERS[scope]["kind"]
        var_list = {}
        for role, ref in layer["variables"].items():
            v = roles[role]
            if ref is None:
                assert v is None, (scope, role)
                continue
            assert var_name(v) == ref["name"], (var_name(v), ref["name"])
            var_list[ref["key"]] = v
        assert set(var_list.values()) == set(v1.global_variables())
        saver = v1.train.Saver(var_list=var_list)
        fetch = {"y": y, "bm": bm, "bv": bv}
        with v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            reader = tf.train.load_checkpoint(prefix)
            for role, ref in layer["variables"].items():
                if ref is not None:
                    val = sess.run(roles[role])
                    assert np.array_equal(val, reader.get_tensor(ref["key"])), (scope, role)
            res = sess.run(fetch, {ph: x, is_training: training})
            if not training:
                return {"inference_y": res["y"]}
            mm, mv = sess.run([roles["moving_mean"], roles["moving_variance"]])
    return {
        "training_y": res["y"],
        "training_moving_mean": mm,
        "training_moving_variance": mv,
        "training_batch_mean": res["bm"],
        "training_batch_variance": res["bv"],
    }
