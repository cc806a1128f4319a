"""TF1 graph-mode fixtures: tf.compat.v1.layers.batch_normalization + Saver,
plus the format corners (sharded, partitioned, multiblock, V1, dtypes).

Runs with TF_USE_LEGACY_KERAS=1 (tf.compat.v1.layers needs tf_keras).
"""

import contextlib
import os

import numpy as np
import tensorflow as tf
from tensorflow.python.training.saving import saveable_object_util

from . import common, tf1_handwritten

v1 = tf.compat.v1
SEED = 1234
STEPS = 3
# Only tf1_trained keeps its .meta (a MetaGraphDef of ~180 KB); the others skip it to keep the corpus small.
NO_META = {"write_meta_graph": False}
TRAIN_BATCH = 8

FIXTURES = (
    "tf1_trained",
    "tf1_no_update_ops",
    "tf1_v1_format",
    "sharded",
    "partitioned",
    "slim_ema",
    "multiblock",
    "dtypes",
    "tf1_handwritten",
)


def init(phase):
    if phase == "build":
        # Two logical CPUs so that a sharded Saver writes two data shards.
        # Must happen before the runtime initialises.
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
        )


# ---------------------------------------------------------------- helpers


def _legacy_bn_class():
    from tf_keras.src.legacy_tf_layers import normalization

    assert v1.layers.batch_normalization.__module__ == normalization.__name__
    return normalization.BatchNormalization


@contextlib.contextmanager
def record_bn_layers():
    """Collect the layer objects that tf.compat.v1.layers.batch_normalization
    creates (the function builds one and returns only its output tensor)."""
    cls = _legacy_bn_class()
    created = []
    orig = cls.__init__

    def init(self, *args, **kwargs):
        orig(self, *args, **kwargs)
        created.append(self)

    cls.__init__ = init
    try:
        yield created
    finally:
        cls.__init__ = orig


def var_name(v):
    name = v.name
    return name[:-2] if name.endswith(":0") else name


def saver_key(v):
    """The key a TF1 Saver stores this variable under (TF's own mapping)."""
    d = saveable_object_util.op_list_to_dict([v])
    assert len(d) == 1, d
    return next(iter(d))


def scope_of(layer):
    # The layer's variable scope, e.g. "batch_normalization_1" or "conv1/BatchNorm".
    return var_name(layer.moving_mean).rsplit("/", 1)[0]


def live_hyper(layer):
    shape = layer._build_input_shape
    rank = len(shape)
    return common.hyper_dict(
        layer.epsilon,
        layer.momentum,
        list(layer.axis),
        rank,
        layer.center,
        layer.scale,
        layer.fused,
        layer.renorm,
        layer.virtual_batch_size,
    )


ROLES = ("gamma", "beta", "moving_mean", "moving_variance")


def batch_stats_ops(graph, scope, fused):
    """Tensors holding the batch statistics of the layer's training step, as
    the TF1 graph exposes them: outputs 1 and 2 of FusedBatchNormV3 (fused) or
    the two outputs of tf.nn.moments (non-fused)."""
    ops = [o for o in graph.get_operations() if o.name.startswith(scope + "/")]
    if fused:
        fbn = [o for o in ops if o.type == "FusedBatchNormV3"]
        assert len(fbn) == 1, [o.name for o in fbn]
        return fbn[0].outputs[1], fbn[0].outputs[2], fbn[0]
    sq = {o.name: o for o in ops if o.type == "Squeeze" and "/moments/" in o.name}
    mean, var = sq.get(scope + "/moments/Squeeze"), sq.get(scope + "/moments/Squeeze_1")
    if mean is None or var is None:
        return None
    return mean.outputs[0], var.outputs[0], None


def layer_entries(fixture, fixture_dir, graph, layers):
    entries = []
    for layer in layers:
        scope = scope_of(layer)
        variables = {}
        for role in ROLES:
            v = getattr(layer, role, None)
            variables[role] = None if v is None else common.var_ref(var_name(v), saver_key(v))
        hyper = live_hyper(layer)
        got = batch_stats_ops(graph, scope, hyper["fused"])
        if got is None:
            stats = None
        elif got[2] is not None:
            factor = got[2].get_attr("exponential_avg_factor")
            stats = {
                "source": "FusedBatchNormV3 outputs 1 (batch_mean) and 2 (batch_variance), exponential_avg_factor=%g" % factor,
                "variance": "bessel" if factor == 1.0 else "kernel-averaged",
            }
        else:
            stats = {"source": "tf.nn.moments outputs (mean, variance)", "variance": "biased"}
        entries.append(
            common.layer_entry(
                fixture_dir, fixture, scope, "tf1-layers", variables, hyper, layer._build_input_shape, stats
            )
        )
    return entries


def bn(x, **kw):
    return v1.layers.batch_normalization(x, training=True, **kw)


def train_data(rng, shape, classes=3):
    x = rng.normal(0.5, 2.0, size=[TRAIN_BATCH] + shape).astype(np.float32)
    y = rng.integers(0, classes, size=[TRAIN_BATCH]).astype(np.int64)
    return x, y


def session_config():
    return v1.ConfigProto(device_count={"CPU": 2})


# ---------------------------------------------------------------- models


def convnet(update_ops, optimizer="momentum"):
    """conv -> BN (defaults, fused) -> conv -> BN (eps 1e-2, momentum 0.9, fused)
    -> mean pool -> dense -> BN (eps 2e-5, momentum 0.95, 2D, non-fused)."""
    x = v1.placeholder(tf.float32, [None, 6, 6, 3], name="images")
    labels = v1.placeholder(tf.int64, [None], name="labels")
    h = v1.layers.conv2d(x, 8, 3, padding="same", name="conv1")
    h = tf.nn.relu(bn(h))
    h = v1.layers.conv2d(h, 12, 3, padding="same", name="conv2")
    h = tf.nn.relu(bn(h, epsilon=1e-2, momentum=0.9))
    h = tf.reduce_mean(h, axis=[1, 2])
    h = v1.layers.dense(h, 6, name="fc1")
    h = bn(h, epsilon=2e-5, momentum=0.95)
    logits = v1.layers.dense(h, 3, name="logits")
    loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
    gs = v1.train.get_or_create_global_step()
    opt = v1.train.MomentumOptimizer(0.05, 0.9) if optimizer == "momentum" else v1.train.GradientDescentOptimizer(0.1)
    deps = v1.get_collection(v1.GraphKeys.UPDATE_OPS) if update_ops else []
    with tf.control_dependencies(deps):
        train = opt.minimize(loss, global_step=gs)
    return dict(x=x, labels=labels, train=train, optimizer=opt, ema=None, input_shape=[6, 6, 3])


def sharded_net():
    """Same kind of net, split over /cpu:0 and /cpu:1 so that Saver(sharded=True)
    writes one data shard per device."""
    x = v1.placeholder(tf.float32, [None, 6, 6, 3], name="images")
    labels = v1.placeholder(tf.int64, [None], name="labels")
    with tf.device("/cpu:0"):
        gs = v1.train.get_or_create_global_step()
        h = v1.layers.conv2d(x, 8, 3, padding="same", name="conv1")
        h = tf.nn.relu(bn(h))
    with tf.device("/cpu:1"):
        h = tf.reduce_mean(h, axis=[1, 2])
        h = v1.layers.dense(h, 6, name="fc1")
        h = bn(h, epsilon=1e-2, momentum=0.9)
        logits = v1.layers.dense(h, 3, name="logits")
    loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
    opt = v1.train.GradientDescentOptimizer(0.1)
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
        train = opt.minimize(loss, global_step=gs)
    return dict(x=x, labels=labels, train=train, optimizer=opt, ema=None, input_shape=[6, 6, 3])


def partitioned_net():
    """A [10, 6] kernel split into 3 row slices, and a 2D BN created inside the
    same partitioner scope, so its gamma and beta are partitioned too."""
    x = v1.placeholder(tf.float32, [None, 10], name="features")
    labels = v1.placeholder(tf.int64, [None], name="labels")
    with v1.variable_scope("blk", partitioner=v1.fixed_size_partitioner(3)):
        w = v1.get_variable("kernel", [10, 6], initializer=v1.glorot_uniform_initializer())
        h = tf.matmul(x, tf.convert_to_tensor(w))
        h = bn(h, epsilon=1e-2, momentum=0.9)
    logits = v1.layers.dense(tf.nn.relu(h), 3, name="logits")
    loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
    gs = v1.train.get_or_create_global_step()
    opt = v1.train.GradientDescentOptimizer(0.1)
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
        train = opt.minimize(loss, global_step=gs)
    return dict(x=x, labels=labels, train=train, optimizer=opt, ema=None, input_shape=[10])


def slim_net():
    """TF-slim naming: <scope>/weights, <scope>/BatchNorm/{beta,moving_mean,
    moving_variance} (scale=False, so no gamma), plus an ExponentialMovingAverage
    of the trainable variables applied after each step."""
    x = v1.placeholder(tf.float32, [None, 6, 6, 3], name="images")
    labels = v1.placeholder(tf.int64, [None], name="labels")
    init = v1.truncated_normal_initializer(stddev=0.3, seed=SEED)
    with v1.variable_scope("conv1"):
        w = v1.get_variable("weights", [3, 3, 3, 8], initializer=init)
        h = tf.nn.conv2d(x, w, strides=1, padding="SAME")
        h = tf.nn.relu(bn(h, scale=False, momentum=0.997, epsilon=1e-5, name="BatchNorm"))
    h = tf.reduce_mean(h, axis=[1, 2])
    with v1.variable_scope("fc1"):
        w = v1.get_variable("weights", [8, 6], initializer=init)
        h = bn(tf.matmul(h, w), scale=False, momentum=0.9, epsilon=1e-2, name="BatchNorm")
    with v1.variable_scope("logits"):
        w = v1.get_variable("weights", [6, 3], initializer=init)
        b = v1.get_variable("biases", [3], initializer=v1.zeros_initializer())
        logits = tf.matmul(tf.nn.relu(h), w) + b
    loss = v1.losses.sparse_softmax_cross_entropy(labels, logits)
    gs = v1.train.get_or_create_global_step()
    opt = v1.train.GradientDescentOptimizer(0.1)
    with tf.control_dependencies(v1.get_collection(v1.GraphKeys.UPDATE_OPS)):
        step = opt.minimize(loss, global_step=gs)
    ema = v1.train.ExponentialMovingAverage(decay=0.9)
    with tf.control_dependencies([step]):
        train = ema.apply(v1.trainable_variables())
    return dict(x=x, labels=labels, train=train, optimizer=opt, ema=ema, input_shape=[6, 6, 3])


# ---------------------------------------------------------------- build


def build_trained(fixture, fixture_dir, net, saver_kwargs, save_kwargs, writer, fmt, readme):
    ckpt_dir = os.path.join(fixture_dir, "ckpt")
    os.makedirs(ckpt_dir)
    graph = tf.Graph()
    with graph.as_default(), record_bn_layers() as layers:
        # tf_keras' unseeded initializers (conv2d/dense kernels) draw their op
        # seeds from Python's and Keras' RNGs, not only from the graph seed.
        import tf_keras

        tf_keras.utils.set_random_seed(SEED)
        v1.set_random_seed(SEED)
        m = net()
        saver = v1.train.Saver(save_relative_paths=True, **saver_kwargs)
        rng = np.random.default_rng(SEED)
        with v1.Session(graph=graph, config=session_config()) as sess:
            sess.run(v1.global_variables_initializer())
            for _ in range(STEPS):
                xb, yb = train_data(rng, m["input_shape"])
                sess.run(m["train"], {m["x"]: xb, m["labels"]: yb})
            saver.save(sess, os.path.join(ckpt_dir, "model.ckpt"), **save_kwargs)
        prefix = os.path.join(ckpt_dir, "model.ckpt")

        layer_list = layer_entries(fixture, fixture_dir, graph, layers)
        extra = {}
        for v in v1.global_variables():
            info = getattr(v, "_save_slice_info", None)
            if info is not None:
                extra.setdefault(info.full_name, {"partitions": []})["partitions"].append(
                    {"name": var_name(v), "offset": list(info.var_offset), "shape": list(info.var_shape)}
                )
        variables = common.dump_variables(prefix, fixture_dir, extra)
        opt_keys = {saver_key(v) for v in m["optimizer"].variables()}
        ema_keys = set()
        if m["ema"] is not None:
            ema_keys = {saver_key(m["ema"].average(v)) for v in v1.trainable_variables()}
        all_model = set()
        for key, val in saveable_object_util.op_list_to_dict(v1.global_variables()).items():
            all_model.add(key)
        other = all_model - opt_keys - ema_keys - {"global_step"}
        non_layer = common.classify(variables, layer_list, opt_keys, ema_keys, other)

    manifest = {
        "fixture": fixture,
        "open": "ckpt/model.ckpt",
        "variables_prefix": "ckpt/model.ckpt",
        "writer": writer,
        "format": fmt,
        "tf_version": tf.__version__,
        "keras_version": common.tf_keras_version(),
        "variables": variables,
        "layers": layer_list,
        "non_layer": non_layer,
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    files = sorted(os.listdir(ckpt_dir))
    common.write_readme(
        fixture_dir, fixture, readme[0], readme[1:] + ["files in ckpt/: " + ", ".join(files)] + layer_lines(layer_list)
    )
    return manifest


def layer_lines(layers):
    out = []
    for l in layers:
        h = l["hyper"]
        out.append(
            "layer `%s`: C=%d, epsilon=%g, momentum=%g, axis=%s, center=%s, scale=%s, fused=%s%s; input %s"
            % (
                l["name"],
                l["channels"],
                h["epsilon"],
                h["momentum"],
                h["axis"],
                h["center"],
                h["scale"],
                h["fused"],
                ", renorm" if h["renorm"] else "",
                l["input_shape"],
            )
        )
    return out


def build_multiblock(fixture, fixture_dir):
    """520 small variables with very long (~580 byte), prefix-distinct names, so the .index
    SSTable needs more than one ~256 KiB data block."""
    ckpt_dir = os.path.join(fixture_dir, "ckpt")
    os.makedirs(ckpt_dir)
    n = 520
    tail = "/".join(["a_rather_long_scope_name_to_fill_index_blocks"] * 12) + "/w"
    graph = tf.Graph()
    with graph.as_default():
        vs = []
        for i in range(n):
            shape = [] if i % 7 else [2]
            init = v1.constant_initializer(i * 0.25)
            vs.append(v1.get_variable("block%04d/%s" % (i, tail), shape, initializer=init))
        saver = v1.train.Saver(vs, save_relative_paths=True)
        with v1.Session(graph=graph) as sess:
            sess.run(v1.global_variables_initializer())
            saver.save(sess, os.path.join(ckpt_dir, "model.ckpt"), write_meta_graph=False)
    prefix = os.path.join(ckpt_dir, "model.ckpt")
    blocks = common.count_index_data_blocks(prefix + ".index")
    assert blocks >= 2, f"multiblock: index has only {blocks} data block(s)"
    variables = common.dump_variables(prefix, fixture_dir)
    manifest = {
        "fixture": fixture,
        "open": "ckpt/model.ckpt",
        "variables_prefix": "ckpt/model.ckpt",
        "writer": "tf.compat.v1.train.Saver V2",
        "format": "v2",
        "tf_version": tf.__version__,
        "keras_version": None,
        "variables": variables,
        "layers": [],
        "non_layer": common.classify(variables, [], other_keys=[v["key"] for v in variables]),
        "index_data_blocks": blocks,
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    size = os.path.getsize(prefix + ".index")
    common.write_readme(
        fixture_dir,
        fixture,
        "TF1 graph + `tf.compat.v1.train.Saver` (V2, no .meta): a bundle whose index needs several SSTable data blocks.",
        [
            f"{n} float32 variables (scalars, every 7th of shape [2]) named `blockNNNN/<~570 chars>/w`, value NNNN*0.25",
            f"the names differ early, so prefix compression cannot shrink them: the .index is {size} bytes "
            f"with {blocks} data blocks (TF cuts blocks at ~256 KiB)",
            "no BN layers",
        ],
    )


def build_dtypes(fixture, fixture_dir):
    """A tf.train.Checkpoint (object-based, V2 bundle) of tf.Variables in many dtypes."""
    ckpt_dir = os.path.join(fixture_dir, "ckpt")
    vals = {
        "f32": tf.constant([[1.0, -0.0, 3.5], [float("inf"), float("-inf"), float("nan")]], tf.float32),
        "f32_scalar": tf.constant(2.5, tf.float32),
        "f32_empty": tf.zeros([0, 3], tf.float32),
        "f16": tf.constant([1.5, -2.0, 65504.0, 6e-8, -0.0], tf.float16),
        "bf16": tf.constant([1.0, -3.25, 1e30, 1e-30, -0.0], tf.bfloat16),
        "f64": tf.constant([[np.pi, -1e-300], [1e300, 0.5]], tf.float64),
        "f64_scalar": tf.constant(-2.0, tf.float64),
        "i64": tf.constant([-1, 2**62, 0], tf.int64),
        "i32": tf.constant([-7, 2**31 - 1, -(2**31)], tf.int32),
        "i16": tf.constant([-300, 300], tf.int16),
        "i8": tf.constant([-128, 127, 0], tf.int8),
        "u8": tf.constant([0, 255, 7], tf.uint8),
        "bool": tf.constant([True, False, True], tf.bool),
        "c64": tf.constant([1 + 2j, -0.5 - 1j], tf.complex64),
        "str": tf.constant([b"ab", b"", "h\u00e9llo".encode(), b"\x00\xff", b"x" * 200]),
        "str_scalar": tf.constant(b"tfbn"),
        "str_matrix": tf.constant([[b"a", b"bc"], [b"def", b""]]),
    }
    variables_created = {}
    skipped = []
    for name, val in vals.items():
        try:
            var = tf.Variable(val, name=name)
            var.assign(val)  # make sure the dtype has CPU kernels
            variables_created[name] = var
        except Exception as e:  # noqa: BLE001 - report and drop unsupported dtypes
            skipped.append(f"{name} ({val.dtype.name}): {type(e).__name__}")
    ckpt = tf.train.Checkpoint(**variables_created)
    path = ckpt.save(os.path.join(ckpt_dir, "ckpt"))
    rel = os.path.relpath(path, fixture_dir)
    keys = common.object_graph_keys(path, ckpt)
    variables = common.dump_variables(path, fixture_dir)
    var_keys = {k for (k, _, _) in keys.values()} - {"save_counter/.ATTRIBUTES/VARIABLE_VALUE"}
    manifest = {
        "fixture": fixture,
        "open": rel,
        "variables_prefix": rel,
        "writer": "tf.train.Checkpoint.save (object-based V2 bundle)",
        "format": "v2",
        "tf_version": tf.__version__,
        "keras_version": None,
        "variables": variables,
        "layers": [],
        "non_layer": common.classify(variables, [], other_keys=var_keys),
    }
    common.write_json(os.path.join(fixture_dir, "expected", "manifest.json"), manifest)
    lines = [
        "eager `tf.Variable`s saved with `tf.train.Checkpoint(**vars).save` -> keys `<name>/.ATTRIBUTES/VARIABLE_VALUE`",
        "dtypes: " + ", ".join(sorted({common.dtype_name(v.dtype) for v in variables_created.values()})),
        "corners: -0.0, inf, nan, f16 subnormal, bf16 (V2 only: V1 cannot hold it), an empty [0,3] tensor, scalars, "
        "strings with an empty string, non-UTF-8 bytes and a 200-byte string (2-byte varint length), a 2x2 string matrix",
        "no BN layers",
    ]
    if skipped:
        lines.append("dtypes TF refused as variables (not in the fixture): " + "; ".join(skipped))
    common.write_readme(fixture_dir, fixture, "`tf.train.Checkpoint` of plain variables in many dtypes.", lines)


def build(fixture, fixture_dir):
    if fixture == "tf1_trained":
        build_trained(
            fixture,
            fixture_dir,
            lambda: convnet(update_ops=True),
            {},
            {},
            "tf.compat.v1.train.Saver V2",
            "v2",
            [
                "TF1 graph mode, `tf.compat.v1.layers.batch_normalization(training=True)`, trained "
                f"{STEPS} MomentumOptimizer steps with UPDATE_OPS as control dependency, saved with "
                "`tf.compat.v1.train.Saver()` (V2) including `model.ckpt.meta`.",
                "model: conv1(8) -> BN -> relu -> conv2(12) -> BN -> relu -> mean pool -> fc1(6) -> BN -> logits(3)",
                "Momentum slots `<var>/Momentum` and `global_step` are in the bundle too",
            ],
        )
    elif fixture == "tf1_no_update_ops":
        build_trained(
            fixture,
            fixture_dir,
            lambda: convnet(update_ops=False),
            {},
            NO_META,
            "tf.compat.v1.train.Saver V2",
            "v2",
            [
                "Same model as tf1_trained, trained WITHOUT running UPDATE_OPS: the moving statistics are still "
                "at their initial values (moving_mean 0, moving_variance 1) although gamma/beta moved.",
                "model: conv1(8) -> BN -> relu -> conv2(12) -> BN -> relu -> mean pool -> fc1(6) -> BN -> logits(3)",
            ],
        )
    elif fixture == "tf1_v1_format":
        build_trained(
            fixture,
            fixture_dir,
            lambda: convnet(update_ops=True),
            {"write_version": v1.train.SaverDef.V1},
            {"write_meta_graph": False},
            "tf.compat.v1.train.Saver V1 (write_version=SaverDef.V1)",
            "v1",
            [
                "Same model and training as tf1_trained, saved in the legacy V1 format: `ckpt/model.ckpt` is a "
                "single SSTable file of SavedTensorSlices (no .index/.data, no .meta).",
                "the variable values are bit-identical to tf1_trained's (same seeds), so a V1 and a V2 reader "
                "must return the same bytes (expected/variables.bin is identical)",
                "model: conv1(8) -> BN -> relu -> conv2(12) -> BN -> relu -> mean pool -> fc1(6) -> BN -> logits(3)",
            ],
        )
    elif fixture == "sharded":
        build_trained(
            fixture,
            fixture_dir,
            sharded_net,
            {"sharded": True},
            NO_META,
            "tf.compat.v1.train.Saver V2 (sharded=True)",
            "v2",
            [
                "TF1 graph with its variables on two logical CPU devices (/cpu:0: conv1 + its BN + global_step; "
                "/cpu:1: fc1 + its BN + logits); `Saver(sharded=True)` writes one data shard per device: "
                "`model.ckpt.data-00000-of-00002` and `model.ckpt.data-00001-of-00002`.",
                f"trained {STEPS} SGD steps with UPDATE_OPS",
            ],
        )
        names = sorted(os.listdir(os.path.join(fixture_dir, "ckpt")))
        shards = [n for n in names if ".data-" in n]
        assert shards == ["model.ckpt.data-00000-of-00002", "model.ckpt.data-00001-of-00002"], names
    elif fixture == "partitioned":
        build_trained(
            fixture,
            fixture_dir,
            partitioned_net,
            {},
            NO_META,
            "tf.compat.v1.train.Saver V2",
            "v2",
            [
                "TF1 graph with `variable_scope('blk', partitioner=fixed_size_partitioner(3))`: the [10,6] kernel "
                "is stored as 3 row slices (4,3,3 rows), and the BN created in that scope has gamma and beta "
                "stored as 3 slices of 2 (the layer turns partitioning off for its moving statistics).",
                "the full entries (`blk/kernel`, `blk/batch_normalization/gamma`, ...) carry `slices`; the "
                "slice data sits under OrderedCode slice keys that TF's reader does not list",
                "manifest: each partitioned variable lists its parts under `partitions` (from the live variables' "
                "_save_slice_info); its bytes are the reassembled full tensor",
                f"trained {STEPS} SGD steps with UPDATE_OPS",
            ],
        )
    elif fixture == "slim_ema":
        build_trained(
            fixture,
            fixture_dir,
            slim_net,
            {},
            NO_META,
            "tf.compat.v1.train.Saver V2",
            "v2",
            [
                "TF-slim style names: `conv1/weights`, `conv1/BatchNorm/{beta,moving_mean,moving_variance}` (no "
                "gamma: scale=False), same for `fc1`; an `ExponentialMovingAverage(decay=0.9)` of all trainable "
                "variables is applied after every step, its shadows `<var>/ExponentialMovingAverage` are saved "
                "in the same checkpoint.",
                f"trained {STEPS} SGD steps with UPDATE_OPS",
            ],
        )
    elif fixture == "multiblock":
        build_multiblock(fixture, fixture_dir)
    elif fixture == "dtypes":
        build_dtypes(fixture, fixture_dir)
    elif fixture == "tf1_handwritten":
        tf1_handwritten.build(fixture, fixture_dir)
    else:
        raise KeyError(fixture)


# ---------------------------------------------------------------- goldens


def goldens(fixture, fixture_dir, onednn):
    if fixture == "tf1_handwritten":
        return tf1_handwritten.goldens(fixture, fixture_dir, onednn)
    manifest = common.read_json(os.path.join(fixture_dir, "expected", "manifest.json"))
    prefix = os.path.join(fixture_dir, manifest["variables_prefix"])
    for layer in manifest["layers"]:
        x = common.load_input(fixture_dir, layer)
        arrays = {}
        for training in (False, True):
            arrays.update(run_layer(layer, prefix, x, training))
        out = common.mode_dir(fixture_dir, layer, onednn)
        common.write_mode_goldens(out, arrays, common.golden_env("tf1-layers", layer["name"], onednn))


def run_layer(layer, prefix, x, training):
    """Rebuild the layer alone in a fresh graph under the same scope, restore its
    variables from the checkpoint with a Saver, feed x."""
    h = layer["hyper"]
    parts = layer["name"].split("/")
    graph = tf.Graph()
    with graph.as_default(), record_bn_layers() as created, contextlib.ExitStack() as stack:
        ph = v1.placeholder(tf.float32, x.shape, name="x")
        for p in parts[:-1]:
            stack.enter_context(v1.variable_scope(p))
        axis = h["axis"][0] if len(h["axis"]) == 1 else h["axis"]
        y = v1.layers.batch_normalization(
            ph,
            axis=axis,
            momentum=h["momentum"],
            epsilon=h["epsilon"],
            center=h["center"],
            scale=h["scale"],
            fused=h["fused"],
            renorm=h["renorm"],
            virtual_batch_size=h["virtual_batch_size"],
            training=training,
            name=parts[-1],
        )
        stack.close()
        assert len(created) == 1
        live = created[0]
        common.check_hyper(layer, live_hyper(live))
        assert scope_of(live) == layer["name"], (scope_of(live), layer["name"])
        var_list = {}
        for role, ref in layer["variables"].items():
            v = getattr(live, role, None)
            if ref is None:
                assert v is None, (layer["name"], role)
                continue
            assert var_name(v) == ref["name"], (var_name(v), ref["name"])
            var_list[ref["key"]] = v
        saver = v1.train.Saver(var_list=var_list)
        fetch = {"y": y}
        updates = v1.get_collection(v1.GraphKeys.UPDATE_OPS) if training else []
        if training and layer["batch_stats"] is not None:
            bm, bv, _ = batch_stats_ops(graph, layer["name"], h["fused"])
            fetch["bm"], fetch["bv"] = bm, bv
        with v1.Session(graph=graph) as sess:
            saver.restore(sess, prefix)
            restored = sess.run({role: getattr(live, role) for role, ref in layer["variables"].items() if ref})
            reader = tf.train.load_checkpoint(prefix)
            for role, val in restored.items():
                # the Saver's restore must agree with the manifest's key mapping
                assert np.array_equal(val, reader.get_tensor(layer["variables"][role]["key"])), (layer["name"], role)
            res = sess.run([fetch, updates], {ph: x})[0]
            if not training:
                return {"inference_y": res["y"]}
            mm, mv = sess.run([live.moving_mean, live.moving_variance])
    out = {"training_y": res["y"], "training_moving_mean": mm, "training_moving_variance": mv}
    if "bm" in res:
        out["training_batch_mean"] = res["bm"]
        out["training_batch_variance"] = res["bv"]
    return out
