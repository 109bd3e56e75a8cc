"""A loaded model version: manifest + runtime, with one uniform call.

``predict`` takes a validated batch (``service/batch.py``; a single-input model also
takes a plain array) and returns named arrays: ``probabilities``, ``class_id`` and
``label`` for classifiers, ``value`` for regressors.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from service import startup
from service.batch import Batch
from service.manifest import Manifest, RawOutput, Reference, Sample, Task
from service.runtimes.base import Runtime
from service.runtimes.lean import Engine
from service.signature import Signature

# float32 arithmetic differs slightly across BLAS builds and batch sizes.
SAMPLE_ATOL = 1e-4
# Time spent measuring one batch size at warm-up (at least one call): start-up waits for
# every version.
WARM_UP_BUDGET_S = 0.005


@dataclass
class LoadedModel:
    manifest: Manifest
    runtime: Runtime
    folder: Path
    engine: Engine | None = None
    # Measured call cost (seconds) by batch rows, from ``warm_up``.
    timings: dict[int, float] = field(default_factory=dict)
    # Requests between resolve and answer: a retired version is let go at 0.
    inflight: int = 0
    # Unloaded from the repository: its batcher is not kept for reuse.
    retired: bool = False
    # The training distributions drift is measured against (None: drift is off).
    reference: Reference | None = None

    def __post_init__(self) -> None:
        self._labels = np.asarray(self.manifest.labels or [], dtype=object)
        self._out_dtypes = {o.name: np.dtype(o.dtype) for o in self.manifest.outputs
                            if o.dtype != "string"}

    @cached_property
    def signature(self) -> Signature:
        return Signature.of(self.manifest)

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> int:
        return self.manifest.version

    def sample_batch(self, rows: int | None = None) -> Batch:
        """The manifest's samples as a batch (validated like a request); ``rows``
        repeats the first sample that many times."""
        from service.tensors import from_rows

        samples = [s.inputs for s in self.manifest.samples]
        if rows is None:
            return from_rows(self.signature, samples, "samples", len(samples))
        # Validated once and repeated: converting 64 copies of an image from lists took
        # most of a warm-up's time for the cheaper models.
        one = from_rows(self.signature, samples[:1], "samples", 1)
        return Batch({k: np.repeat(v, rows, axis=0) for k, v in one.arrays.items()}, rows)

    def warm_up(self, rows: tuple[int, ...] = (1, 64), repeat: int = 5) -> None:
        """Run the model on sample-sized batches and record the median cost per size,
        which decides how it is batched. A first call at each size is discarded (it
        allocates, and traces in Keras), except up to the size of the check batch a lean
        runtime already ran: with start-up's allocator settings (service/startup.py) the
        next calls reuse its memory, within 4% of steady cost for the CNN."""
        checked = self.engine.checked_rows if self.engine is not None else 0
        if not startup.malloc_tuned():
            checked = 0  # without it the next call faults in its memory afresh
        for n in rows:
            batch = self.sample_batch(n)
            if n > checked:
                self.predict(batch)
            costs: list[float] = []
            while len(costs) < repeat and sum(costs) < WARM_UP_BUDGET_S:
                start = time.perf_counter()
                self.predict(batch)
                costs.append(time.perf_counter() - start)
            # statistics, not numpy: np.median imports numpy.ma (6 ms of start-up).
            self.timings[n] = statistics.median(costs)

    def seconds_for(self, rows: int) -> float:
        """Estimated call cost for ``rows`` rows: linear between the measured sizes."""
        if not self.timings:
            return float("inf")
        sizes = sorted(self.timings)
        if rows > sizes[-1]:
            return self.timings[sizes[-1]] * rows / sizes[-1]
        return float(np.interp(rows, sizes, [self.timings[n] for n in sizes]))

    def predict(self, batch: Batch | np.ndarray) -> dict[str, np.ndarray]:
        if not isinstance(batch, Batch):
            from service.tensors import from_array

            batch = from_array(self.signature, np.asarray(batch))
        m = self.manifest
        return name_outputs(m.task, m.raw_output, self.runtime.raw(batch), self._labels,
                            self._out_dtypes)

    def check_samples(self) -> list[str]:
        """Run the manifest's samples; return one sentence per disagreement."""
        got = self.predict(self.sample_batch())
        problems = []
        for i, sample in enumerate(self.manifest.samples):
            problems.extend(compare_sample(i, sample, {k: v[i] for k, v in got.items()}))
        return problems


def name_outputs(task: Task, raw_output: RawOutput, raw: np.ndarray, labels: np.ndarray,
                 dtypes: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
    dtypes = dtypes or {}
    if task is Task.REGRESSION:
        return {"value": raw.reshape(len(raw)).astype(dtypes.get("value", "float32"),
                                                      copy=False)}
    if raw_output is RawOutput.CLASS_INDEX:
        class_id = raw.reshape(len(raw)).astype(np.int64)
        return {"class_id": class_id, "label": labels[class_id]}
    if raw_output is RawOutput.POSITIVE_PROBABILITY:
        p = raw.reshape(len(raw), 1)
        raw = np.concatenate([1.0 - p, p], axis=1)
    class_id = raw.argmax(axis=1).astype(np.int64)
    return {"probabilities": raw.astype(np.float32, copy=False), "class_id": class_id,
            "label": labels[class_id]}


def compare_sample(index: int, sample: Sample, got: dict[str, np.ndarray]) -> list[str]:
    problems = []
    for key, expected in sample.expected.items():
        value = got.get(key)
        if value is None:
            problems.append(f"sample {index}: the model returned no {key!r}")
        elif isinstance(expected, str) or key == "class_id":
            if str(value) != str(expected):
                problems.append(f"sample {index}: {key} is {value}, expected {expected}")
        elif not np.allclose(np.asarray(value, dtype=np.float64), expected, atol=SAMPLE_ATOL):
            problems.append(f"sample {index}: {key} is {np.round(value, 6).tolist()}, "
                            f"expected {expected}")
    return problems
