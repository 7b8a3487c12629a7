"""The teacher values a prepared network keeps between compiles (`dse.sim.teachers`): a compile that reads them
gives bit for bit what a compile that computes its own gives, on a dense and on a convolutional network."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from compiler_helpers import integer_form

from dse.compile import CompileResult, Prepared, compile, load_model, prepare
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.sim.teachers import Teachers
from dse.tune import TuneOptions

FAST = TuneOptions(free_steps=12, range_steps=6, round_fractions=(0.5, 1.0), round_steps=4, max_rows=4000)


def chip(weight_bits: int, rows: int) -> HardwareSpec:
    return HardwareSpec(name=f"w{weight_bits}r{rows}", crossbar=Crossbar(rows, rows, 4, True),
                        weights=Weights(weight_bits, "per_crossbar"), io=IO(4, 4))


def fingerprint(result: CompileResult) -> tuple:
    """Everything a compile measured that does not depend on the clock."""
    cores = integer_form(result.graph)
    losses = [(b.name, repr(sorted(b.losses.items()))) for b in result.blocks]
    layers = [{k: v for k, v in row.items() if "second" not in k} for row in result.layers]
    return result.report.metrics.to_dict(), cores, losses, layers


def fresh(prepared: Prepared) -> Prepared:
    """The same prepared network with nothing kept yet."""
    return dataclasses.replace(prepared)


@pytest.mark.parametrize("model,dataset", [("mlp_digits", "digits"), ("lenet_mnist", "mnist")])
def test_a_compile_reading_kept_teachers_equals_one_computing_them(model: str, dataset: str) -> None:
    graph, data = load_model(model, dataset, calib_samples=600, test_samples=200)
    shared = prepare(graph, data, name=model)
    compile(shared, chip(8, 256), tuning=FAST)  # fills the kept values
    assert shared.teachers._calib and shared.teachers._test
    second = compile(shared, chip(4, 64), tuning=FAST)
    alone = compile(fresh(shared), chip(4, 64), tuning=FAST)
    a, b = fingerprint(second), fingerprint(alone)
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2] and a[3] == b[3]


def test_values_past_the_bound_are_not_kept() -> None:
    graph, data = load_model("mlp_digits", "digits", calib_samples=300, test_samples=100)
    prepared = prepare(graph, data, name="mlp_digits")
    prepared.teachers = Teachers(prepared.exact, prepared.calib_x, max_floats=10)
    kept = compile(prepared, chip(4, 256), tuning=FAST)
    assert not prepared.teachers._calib and not prepared.teachers._test
    alone = compile(fresh(prepared), chip(4, 256), tuning=FAST)
    assert fingerprint(kept)[:3] == fingerprint(alone)[:3]


def test_kept_values_are_not_pickled() -> None:
    """A Ray worker computes its own: the driver's never travel through the object store."""
    graph, data = load_model("mlp_digits", "digits", calib_samples=300, test_samples=100)
    prepared = prepare(graph, data, name="mlp_digits")
    compile(prepared, chip(4, 256), tuning=FAST)
    copy = pickle.loads(pickle.dumps(prepared))
    assert prepared.teachers._calib and not copy.teachers._calib and not copy.teachers._test
    np.testing.assert_array_equal(copy.teachers.calib_x.numpy(), prepared.calib_x.numpy())
