"""Models of the Keras-file fixtures (`kfile_*`), written once for every
Keras flavour: `make(K)` takes the Keras module (Keras 3 `keras`, `tf_keras`,
or the `tf.keras` of TF <= 2.15) and returns the builders. The same layer API
exists in all three; the custom classes are defined (and registered for
deserialization) per flavour, inside `make`.

Every BN layer has its own non-default epsilon and momentum, so that the
Rust side must recover them from the stored config.

  cnn        functional: conv1 -> bn_nhwc (axis -1) -> Permute to NCHW ->
             bn_nchw (axis 1) -> Permute back -> conv2 -> bn_nocenter
             (center=False) -> pool -> fc1 -> bn_noscale (scale=False) ->
             fc2 -> bn_renorm (renorm, renorm_clipping, renorm_momentum) ->
             logits
  nested     functional over sequences (8 steps x 5 features): conv1d ->
             bn_seq (rank 3) -> Sequential `inner` [conv1d `c`, BN `bn`] ->
             pool -> fc -> bn_dense (rank 2) -> logits
  subclassed subclassed model `Net` (name `net`): custom layer `block`
             (class `Block`: Conv2D `conv` + BN `bn`) -> pool -> Dense `fc`
             -> BN `bn_top` (rank 2) -> Dense `head`
  mixed      functional under the `mixed_float16` policy: conv1 -> bn_conv ->
             pool -> fc1 -> bn_fc -> logits (float32 policy)
  chunked    functional: conv1 -> BN with a 700-character name -> 100
             Activation('linear') layers -> pool -> logits; the 700-byte name
             makes the fixed-width `layer_names` attribute of a Keras 2 .h5
             (103 x 700 bytes) exceed HDF5's 64 KiB object header limit, so
             Keras 2 splits it into `layer_names0`, `layer_names1`, ...
"""

LONG_BN_NAME = "bn_" + "".join("long_layer_name_%03d_" % i for i in range(35))[: 700 - 3]
assert len(LONG_BN_NAME) == 700

# model -> per-sample input shape, and the BN layer paths (in model order).
INPUT_SHAPES = {
    "cnn": (6, 6, 3),
    "nested": (8, 5),
    "subclassed": (6, 6, 3),
    "mixed": (6, 6, 3),
    "chunked": (4, 4, 3),
}
BN_PATHS = {
    "cnn": ["bn_nhwc", "bn_nchw", "bn_nocenter", "bn_noscale", "bn_renorm"],
    "nested": ["bn_seq", "inner/bn", "bn_dense"],
    "subclassed": ["block/bn", "bn_top"],
    "mixed": ["bn_conv", "bn_fc"],
    "chunked": [LONG_BN_NAME],
}
N_CLASSES = 3


def make(K):
    L = K.layers
    register = K.utils.register_keras_serializable

    @register(package="tfbn")
    class Block(L.Layer):
        """Conv2D + BN inside one custom layer (BN path `block/bn`)."""

        def __init__(self, filters=6, **kwargs):
            super().__init__(**kwargs)
            self.filters = filters
            self.conv = L.Conv2D(filters, 3, padding="same", name="conv")
            self.bn = L.BatchNormalization(epsilon=3e-3, momentum=0.85, name="bn")

        def call(self, x, training=None):
            return self.bn(self.conv(x), training=training)

        def get_config(self):
            return {**super().get_config(), "filters": self.filters}

    @register(package="tfbn")
    class Net(K.Model):
        def __init__(self, **kwargs):
            kwargs.setdefault("name", "net")
            super().__init__(**kwargs)
            self.block = Block(6, name="block")
            self.pool = L.GlobalAveragePooling2D(name="pool")
            self.fc = L.Dense(5, name="fc")
            self.bn_top = L.BatchNormalization(epsilon=4e-5, momentum=0.93, name="bn_top")
            self.head = L.Dense(N_CLASSES, name="head")

        def call(self, x, training=None):
            h = self.block(x, training=training)
            h = self.pool(h)
            h = self.bn_top(self.fc(h), training=training)
            return self.head(h)

        def get_config(self):
            return {"name": self.name}

    def cnn():
        inp = K.Input(INPUT_SHAPES["cnn"], name="image")
        h = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
        h = L.BatchNormalization(name="bn_nhwc", epsilon=1e-2, momentum=0.9)(h)
        h = L.Permute((3, 1, 2), name="to_nchw")(h)
        h = L.BatchNormalization(axis=1, name="bn_nchw", epsilon=2e-3, momentum=0.95)(h)
        h = L.Permute((2, 3, 1), name="to_nhwc")(h)
        h = L.Conv2D(10, 3, padding="same", name="conv2")(h)
        h = L.BatchNormalization(center=False, name="bn_nocenter", epsilon=5e-4, momentum=0.97)(h)
        h = L.GlobalAveragePooling2D(name="pool")(h)
        h = L.Dense(6, name="fc1")(h)
        h = L.BatchNormalization(scale=False, name="bn_noscale", epsilon=3e-5, momentum=0.93)(h)
        h = L.Dense(7, name="fc2")(h)
        h = L.BatchNormalization(
            renorm=True,
            renorm_clipping={"rmax": 2.5, "rmin": 0.4, "dmax": 3.0},
            renorm_momentum=0.8,
            name="bn_renorm",
            epsilon=4e-3,
            momentum=0.85,
        )(h)
        out = L.Dense(N_CLASSES, name="logits")(h)
        return K.Model(inp, out, name="kfile_cnn")

    def nested():
        inp = K.Input(INPUT_SHAPES["nested"], name="seq")
        h = L.Conv1D(6, 3, padding="same", name="conv1d")(inp)
        h = L.BatchNormalization(name="bn_seq", epsilon=6e-3, momentum=0.91)(h)
        inner = K.Sequential(
            [
                K.Input((8, 6)),
                L.Conv1D(4, 3, padding="same", name="c"),
                L.BatchNormalization(name="bn", epsilon=2e-4, momentum=0.96),
            ],
            name="inner",
        )
        h = inner(h)
        h = L.GlobalAveragePooling1D(name="pool")(h)
        h = L.Dense(5, name="fc")(h)
        h = L.BatchNormalization(name="bn_dense", epsilon=7e-5, momentum=0.88)(h)
        out = L.Dense(N_CLASSES, name="logits")(h)
        return K.Model(inp, out, name="kfile_nested")

    def subclassed():
        import numpy as np

        m = Net()
        m(np.zeros((1,) + INPUT_SHAPES["subclassed"], np.float32))
        return m

    def mixed():
        K.mixed_precision.set_global_policy("mixed_float16")
        try:
            inp = K.Input(INPUT_SHAPES["mixed"], name="image")
            h = L.Conv2D(8, 3, padding="same", name="conv1")(inp)
            h = L.BatchNormalization(name="bn_conv", epsilon=1.5e-3, momentum=0.92)(h)
            h = L.GlobalAveragePooling2D(name="pool")(h)
            h = L.Dense(6, name="fc1")(h)
            h = L.BatchNormalization(name="bn_fc", epsilon=2.5e-4, momentum=0.94)(h)
            out = L.Dense(N_CLASSES, name="logits", dtype="float32")(h)
            return K.Model(inp, out, name="kfile_mixed")
        finally:
            K.mixed_precision.set_global_policy("float32")

    def chunked():
        inp = K.Input(INPUT_SHAPES["chunked"], name="image")
        h = L.Conv2D(4, 3, padding="same", name="conv1")(inp)
        h = L.BatchNormalization(name=LONG_BN_NAME, epsilon=8e-3, momentum=0.86)(h)
        for i in range(100):
            h = L.Activation("linear", name="identity_%03d" % i)(h)
        h = L.GlobalAveragePooling2D(name="pool")(h)
        out = L.Dense(N_CLASSES, name="logits")(h)
        return K.Model(inp, out, name="kfile_chunked")

    builders = {"cnn": cnn, "nested": nested, "subclassed": subclassed, "mixed": mixed, "chunked": chunked}
    return builders, {"Block": Block, "Net": Net}
