#!/usr/bin/env python3
"""Time TensorFlow's own Python checkpoint reader, for comparison with tfbn.

    .venv/bin/python scripts/bench_tf_read.py PREFIX [--repeat N] [--warmup N]

One run = tf.train.load_checkpoint(PREFIX) + reader.get_tensor(key) for every
key the reader lists (the values are touched so nothing is left lazy).
Importing TensorFlow happens before the clock starts. Prints each run's time
and then `median_s=<float>` on the last line.
"""

import argparse
import os
import statistics
import sys
import time


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("prefix", help="checkpoint prefix (V2: PREFIX.index exists) or V1 file")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first, e.g. to fill the page cache (default 1)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np
    import tensorflow as tf

    def run():
        reader = tf.train.load_checkpoint(args.prefix)
        nbytes = 0
        keys = sorted(reader.get_variable_to_dtype_map())
        for key in keys:
            value = reader.get_tensor(key)
            nbytes += np.asarray(value).nbytes if not isinstance(value, bytes) else len(value)
        return len(keys), nbytes

    for _ in range(args.warmup):
        run()
    times = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        n, nbytes = run()
        dt = time.perf_counter() - t0
        times.append(dt)
        print(f"run {i + 1}: {dt:.4f} s ({n} tensors, {nbytes / (1 << 20):.1f} MiB)")
    print(f"median_s={statistics.median(times):.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
