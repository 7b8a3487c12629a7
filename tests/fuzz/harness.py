"""One fuzz case: a model through `load_onnx` and `prepare`, judged.

A case passes when the model is imported and prepared with finite outputs that agree with onnxruntime's
(where onnxruntime runs it), or is refused with a `DseError` of one line. It fails as a *crash* (any other
exception), a *hang* (over `CASE_SECONDS`), or a *wrong* success (non-finite outputs, a message of several
lines, or outputs that differ from onnxruntime's).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from dse.compile import prepare
from dse.data.datasets import Dataset
from dse.errors import DseError
from dse.frontends.onnx import load_onnx

CASE_SECONDS = 30  # over the constant folder's own budget (10 s): a case past it hangs
SAMPLES = 3  # calibration and test samples


class _Hang(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    kind: str  # "ok", "refused", "crash", "hang", "wrong"
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.kind in ("crash", "hang", "wrong")


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise _Hang

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _dataset(shape: tuple[int, ...], seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (2 * SAMPLES, *shape)).astype(np.float32)
    return Dataset(name="fuzz", x_train=x[:SAMPLES], y_train=None, x_test=x[SAMPLES:], y_test=None,
                   input_shape=tuple(shape), value_range=(0.0, 1.0), num_classes=None)


def _onnxruntime(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray | None:
    """onnxruntime's outputs, one sample at a time (the file may fix a batch of 1); None where it refuses."""
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 3  # no warnings about the generated models' undeclared output shapes
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([np.asarray(session.run(None, {name: x[i : i + 1]})[0], np.float64).reshape(1, -1)
                               for i in range(len(x))])
    except Exception:  # noqa: BLE001 - a model onnxruntime refuses has no reference
        return None


def _judge(model: onnx.ModelProto | None, logits: np.ndarray, x: np.ndarray) -> Outcome:
    if not np.isfinite(logits).all():
        return Outcome("wrong", "prepared with non-finite outputs")
    if model is None:
        return Outcome("ok")
    ref = _onnxruntime(model, x)
    if ref is None or not np.isfinite(ref).all() or ref.size != logits.size:
        return Outcome("ok")
    got = logits.reshape(ref.shape)
    scale = max(1.0, float(np.abs(ref).max()))
    if not np.allclose(got, ref, rtol=1e-3, atol=1e-4 * scale):
        return Outcome("wrong", f"differs from onnxruntime by {float(np.abs(got - ref).max()):.3g} (scale {scale:.3g})")
    return Outcome("ok")


def run_case(source: onnx.ModelProto | Path, seed: int = 0) -> Outcome:
    """Import and prepare `source` (a model, or a file for the byte-level mutator) and judge the outcome."""
    try:
        with time_limit(CASE_SECONDS):
            graph = load_onnx(source)
            data = _dataset(tuple(graph.input.op.shape), seed)
            prepared = prepare(graph, data)
            model = source if isinstance(source, onnx.ModelProto) else None
            return _judge(model, prepared.original_test_logits, np.asarray(data.x_test))
    except _Hang:
        return Outcome("hang", f"over {CASE_SECONDS} s")
    except DseError as e:
        message = str(e)
        if "\n" in message or not message.strip():
            return Outcome("wrong", f"a refusal that is not one line: {message!r}")
        return Outcome("refused", f"{type(e).__name__}: {message}")
    except Exception as e:  # noqa: BLE001 - what the fuzzer looks for
        return Outcome("crash", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
