"""One fuzz case: a model through `load_onnx`, `prepare` and `compile`, judged.

A case passes when the model is refused with a `DseError` of one line at any step, or when:

- it is imported and prepared with finite outputs that agree with onnxruntime's (where onnxruntime runs it:
  a generated model, or a mutant whose bytes still parse);
- the prepared network compiles for the `ideal` chip (no tuning: nothing to tune) with finite metrics and,
  where no element-wise function is approximated by an MLP (`FUNCTIONS`) and no constant is near float32's
  limit, logits equal to the original's (under an output Softmax, which the compile drops):
  this checks the reformed, exact graph the chip compiles from, which `prepare` builds but does not run;
- given `chip`, it compiles for chip_a (quantized: the tuner, the integer simulator) with finite metrics.

It fails as a *crash* (any other exception), a *hang* (over `CASE_SECONDS`), or a *wrong* success (non-finite
outputs or metrics, a message of several lines, outputs that differ from onnxruntime's or, on the ideal chip,
from the original's).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import onnx

from dse.compile import CompileResult, Prepared, compile, prepare
from dse.data.datasets import Dataset
from dse.errors import DseError
from dse.frontends.onnx import load_onnx
from dse.hardware.spec import HardwareSpec
from dse.ir.graph import Graph
from dse.passes.approximator import FUNCTIONS
from dse.sim.float_exec import run_float
from dse.timelimit import time_limit
from dse.tune.options import TuneOptions

CASE_SECONDS = 30  # over the constant folder's own budget (10 s): a case past it hangs
SAMPLES = 3  # calibration and test samples
IDEAL_REL_ERROR = 1e-3  # the ideal chip's logits against the original's, relative (float32 sums reordered)
HUGE = 1e30  # a constant this large: the ideal chip is not exact (see `_run`)


class _Hang(Exception):
    pass


@dataclass(frozen=True)
class Outcome:
    kind: str  # "ok", "refused", "crash", "hang", "wrong"
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.kind in ("crash", "hang", "wrong")


@cache
def preset(name: str) -> HardwareSpec:
    from dse.config import compose_config, hardware_from

    return hardware_from(compose_config("compile", [f"hardware={name}"]).hardware)


def _dataset(shape: tuple[int, ...], seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (2 * SAMPLES, *shape)).astype(np.float32)
    return Dataset(name="fuzz", x_train=x[:SAMPLES], y_train=None, x_test=x[SAMPLES:], y_test=None,
                   input_shape=tuple(shape), value_range=(0.0, 1.0), num_classes=None)


def _reference_model(source: onnx.ModelProto | Path) -> onnx.ModelProto | None:
    """The model onnxruntime is given: the generated one, or a mutant's bytes where they still parse."""
    if isinstance(source, onnx.ModelProto):
        return source
    try:
        return onnx.load_model_from_string(Path(source).read_bytes())
    except Exception:  # noqa: BLE001 - bytes onnx cannot parse have no reference
        return None


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


def _judge_original(model: onnx.ModelProto | None, logits: np.ndarray, x: np.ndarray) -> Outcome:
    if not np.isfinite(logits).all():
        return Outcome("wrong", "prepared with non-finite outputs")
    ref = None if model is None else _onnxruntime(model, x)
    if ref is None or not np.isfinite(ref).all() or ref.size != logits.size:
        return Outcome("ok")
    got = logits.reshape(ref.shape)
    scale = max(1.0, float(np.abs(ref).max()))
    if not np.allclose(got, ref, rtol=1e-3, atol=1e-4 * scale):
        return Outcome("wrong", f"differs from onnxruntime by {float(np.abs(got - ref).max()):.3g} (scale {scale:.3g})")
    return Outcome("ok")


def _judge_compiled(result: CompileResult, chip: str, exact: bool) -> Outcome:
    metrics = result.report.metrics.to_dict()
    bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        return Outcome("wrong", f"compiled for {chip} with non-finite metrics {bad} (legal: {result.legal})")
    if exact and metrics["logits_rel_error"] > IDEAL_REL_ERROR:
        return Outcome("wrong", f"compiled for {chip}, its logits differ from the original's by "
                                f"{metrics['logits_rel_error']:.3g} (relative)")
    return Outcome("ok")


def _largest_constant(graph: Graph) -> float:
    """The largest magnitude of any array an op of `graph` holds (weights, biases, scales, bounds)."""
    arrays = [v for node in graph for v in vars(node.op).values() if isinstance(v, np.ndarray) and v.size]
    return max((float(np.abs(a).max()) for a in arrays), default=0.0)


def _run(source: onnx.ModelProto | Path, seed: int, chip: bool) -> Outcome:
    graph = load_onnx(source)
    data = _dataset(tuple(graph.input.op.shape), seed)
    prepared: Prepared = prepare(graph, data)
    x = np.asarray(data.x_test)
    outcome = _judge_original(_reference_model(source), run_float(graph, x)[graph.outputs[0]].numpy(), x)
    if outcome.failed:
        return outcome
    # not exact even on the ideal chip: an MLP-approximated function; a constant near float32's limit (the
    # generator's 3e38), whose values the chip's ReLU pairs cancel (clip(s, 0, 6) = relu(s) - relu(s - 6) is 0
    # in float32 for s = 1e38). An output Softmax is exact: the compile drops it and compares the logits
    exact = not graph.of_type(*FUNCTIONS) and _largest_constant(graph) < HUGE
    outcome = _judge_compiled(compile(prepared, preset("ideal"), tuning=TuneOptions(mode="none")),
                              "the ideal chip", exact)
    if outcome.failed or not chip:
        return outcome
    return _judge_compiled(compile(prepared, preset("chip_a")), "chip_a", exact=False)


def run_case(source: onnx.ModelProto | Path, seed: int = 0, chip: bool = False) -> Outcome:
    """Import, prepare and compile `source` (a model, or a file for the byte-level mutator) and judge the
    outcome; `chip`: also compile it for chip_a (tens of ms for a generated model, up to seconds for a mutant
    of a committed network: the fuzz tests do it for a bounded sample). A hang must happen twice: the limit is
    wall-clock time, and a case of a second on a machine loaded by other work (the slow run beside other slow
    tests) once went past it."""
    outcome = _limited(source, seed, chip)
    return _limited(source, seed, chip) if outcome.kind == "hang" else outcome


def _limited(source: onnx.ModelProto | Path, seed: int, chip: bool) -> Outcome:
    try:
        with time_limit(CASE_SECONDS, _Hang):
            return _run(source, seed, chip)
    except _Hang:
        return Outcome("hang", f"over {CASE_SECONDS} s")
    except DseError as e:
        message = str(e)
        if "\n" in message or not message.strip():
            return Outcome("wrong", f"a refusal that is not one line: {message!r}")
        return Outcome("refused", f"{type(e).__name__}: {message}")
    except Exception as e:  # noqa: BLE001 - what the fuzzer looks for
        if _raised_by_hang(e):  # the limit struck inside a pass, which wraps what it raises (PassError)
            return Outcome("hang", f"over {CASE_SECONDS} s")
        return Outcome("crash", f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")


def _raised_by_hang(e: BaseException | None) -> bool:
    seen = set()
    while e is not None and id(e) not in seen:
        if isinstance(e, _Hang):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False
