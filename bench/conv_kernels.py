"""Times the digits v2 CNN rebuilt from service/runtimes/lean/conv.py, on its compiled loops
(_convloops.c) and on their numpy fallbacks, against TensorFlow's call (a ``tf.function``
with a fixed input signature), batch 1 and 64.

    .venv/bin/python bench/conv_kernels.py            # both thread settings
    .venv/bin/python bench/conv_kernels.py --rounds 9

Thread pools are fixed when numpy and TensorFlow load, so each setting runs in its own
child process: "1 thread" pins OMP/BLAS/TF threads as the service does with
MODELSERVE_INFERENCE_THREADS=1, "default" leaves them to the libraries. Within a child the
passes run alternately, round after round, so a busy neighbour slows both alike; the
figure per pass is the median of all its calls. The rebuilt network is the one
tests/test_lean_conv.py checks against the committed model.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PINNED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
          "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
BATCHES = (1, 64)
CALLS = {1: 200, 64: 20}  # per round


def child(rounds: int) -> dict[str, dict[str, float]]:
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import tensorflow as tf

    from service.runtimes.lean import convloops
    from tests.test_lean_conv import DIGITS, digits_forward, digits_inputs, keras

    model = keras.saving.load_model(DIGITS / "model.keras", compile=False, safe_mode=True)
    spec = tf.TensorSpec(shape=[None, 28, 28], dtype=tf.float32)
    compiled = tf.function(lambda x: model(x, training=False), input_signature=[spec],
                           reduce_retracing=True)
    lean = digits_forward(model)
    built = convloops.COMPILED

    def numpy_loops(x: np.ndarray) -> object:
        convloops.COMPILED = False
        try:
            return lean(x)
        finally:
            convloops.COMPILED = built

    passes: dict[str, Callable[[np.ndarray], object]] = {
        "tf.function": lambda x: np.asarray(compiled(x)), "numpy loops": numpy_loops}
    if built:
        passes["C loops"] = lean
    results: dict[str, dict[str, float]] = {}
    for n in BATCHES:
        x = digits_inputs(n)
        times: dict[str, list[float]] = {name: [] for name in passes}
        for fn in passes.values():  # warm-up: tracing, BLAS buffers, caches
            for _ in range(5):
                fn(x)
        for _ in range(rounds):
            for name, fn in passes.items():
                for _ in range(CALLS[n]):
                    start = time.perf_counter()
                    fn(x)
                    times[name].append(time.perf_counter() - start)
        results[str(n)] = {name: float(np.median(t)) * 1e3 for name, t in times.items()}
    return results


def run_setting(pinned: bool, rounds: int) -> dict[str, dict[str, float]]:
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if pinned:
        env.update(PINNED)
    out = subprocess.run([sys.executable, __file__, "--child", "--rounds", str(rounds)],
                         env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.rounds)))
        return
    print(f"{'threads':<9}{'batch':>6}{'tf.function ms':>16}{'C loops ms':>12}"
          f"{'numpy loops ms':>16}{'tf / C':>9}")
    for label, pinned in (("1", True), ("default", False)):
        for n, r in run_setting(pinned, args.rounds).items():
            tf_ms, np_ms = r["tf.function"], r["numpy loops"]
            c_ms = r.get("C loops", float("nan"))  # nan: _convloops was not built
            print(f"{label:<9}{n:>6}{tf_ms:>16.3f}{c_ms:>12.3f}{np_ms:>16.3f}"
                  f"{tf_ms / c_ms:>8.2f}x")


if __name__ == "__main__":
    main()
