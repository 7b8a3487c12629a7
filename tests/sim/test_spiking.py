"""The spiking simulator against closed forms of single neurons and against the integer simulator."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dse.hardware.spec import Neuron
from dse.ir import ops as o
from dse.ir.graph import GraphBuilder
from dse.sim.integer import run_integer
from dse.sim.spiking import encode, integrate, run_spiking


@pytest.mark.parametrize("steps", [1, 4, 7, 16, 32])
def test_rate_code_emits_exactly_the_code_evenly_spread(steps: int) -> None:
    codes = torch.arange(steps + 1, dtype=torch.float64)
    trains = encode(codes, steps)
    assert trains.shape == (steps + 1, steps)
    assert torch.equal(trains.sum(dim=1), codes)
    for c in range(1, steps + 1):  # gaps between spikes differ by at most one step
        times = torch.nonzero(trains[c]).flatten()
        gaps = torch.diff(torch.cat([times, times[:1] + steps]))
        assert int(gaps.max() - gaps.min()) <= 1


def test_poisson_code_has_the_right_mean() -> None:
    codes = torch.full((20000,), 5.0, dtype=torch.float64)
    trains = encode(codes, 16, "poisson", torch.Generator().manual_seed(0))
    assert set(trains.unique().tolist()) <= {0.0, 1.0}
    assert abs(float(trains.sum(dim=1).mean()) - 5.0) < 0.05


def _reference_trains(current: np.ndarray, threshold: np.ndarray, neuron: Neuron) -> np.ndarray:
    """`integrate`'s dynamics one neuron and one step at a time, in plain Python floats (float32 rounding applied
    after each operation, as torch's float32 tensors round)."""
    f32 = np.float32
    out = np.zeros(current.shape, np.float32)
    th = np.broadcast_to(threshold, current[:, 0].shape)
    for idx in np.ndindex(current[:, 0].shape):
        b, rest = idx[0], idx[1:]
        theta = f32(th[idx])
        v = f32(theta / f32(2))
        for t in range(current.shape[1]):
            v = f32(v * f32(neuron.decay)) if neuron.decay != 1.0 else v
            v = f32(v + current[(b, t, *rest)])
            if neuron.floor is not None:
                v = max(v, f32(neuron.floor))
            if v >= theta:
                out[(b, t, *rest)] = 1.0
                v = f32(v - theta) if neuron.reset == "subtract" else f32(0.0)
    return out


@pytest.mark.parametrize(("model", "reset", "leak"), [("if", "subtract", 1.0), ("if", "zero", 1.0),
                                                      ("lif", "subtract", 0.9), ("lif", "zero", 0.8),
                                                      ("if_floor", "subtract", 1.0)])
def test_integrate_equals_a_neuron_by_neuron_reference(model: str, reset: str, leak: float) -> None:
    """Per-channel thresholds on (N, T, C, H, W) currents of both signs, some steps bringing more than one
    threshold: every spike as the one-neuron, one-step reference emits it."""
    gen = torch.Generator().manual_seed(3)
    current = (torch.randn((3, 12, 4, 2, 3), generator=gen) * 0.8).float()
    threshold = (torch.rand((4, 1, 1), generator=gen) + 0.4).float()
    neuron = Neuron(model, 12, leak=leak, reset=reset)
    got = integrate(current, threshold, neuron).numpy()
    want = _reference_trains(current.numpy(), threshold.numpy(), neuron)
    np.testing.assert_array_equal(got, want)
    assert 0 < want.sum() < want.size


@given(current=st.floats(0.0, 3.0), threshold=st.floats(0.3, 2.0), steps=st.integers(1, 40))
@settings(max_examples=200, deadline=None)
def test_if_subtract_constant_current_closed_form(current: float, threshold: float, steps: int) -> None:
    """From v0 = theta/2, v_t = theta/2 + t*I - theta*n: the count is round(T*I/theta), at most one per step."""
    i = torch.full((1, steps, 1), current, dtype=torch.float64)
    count = int(integrate(i, torch.tensor(threshold, dtype=torch.float64), Neuron("if", steps)).sum())
    expected = min(steps, math.floor(steps * current / threshold + 0.5))
    # at an exact tie the float comparison decides; allow only that case to differ by one
    tie = abs(steps * current / threshold + 0.5 - round(steps * current / threshold + 0.5)) < 1e-9
    assert count == expected or (tie and abs(count - expected) <= 1)


def _lif_zero_reset_count(current: float, threshold: float, leak: float, steps: int) -> int | None:
    """Closed form: v_k = leak^k v0 + I (1 - leak^k) / (1 - leak); after a spike the neuron restarts at 0.
    None when some v_k lands within rounding of the threshold (float arithmetic may then go either way)."""

    def v(k: int, v0: float) -> float:
        return leak**k * v0 + current * (1 - leak**k) / (1 - leak)

    if any(abs(v(k, v0) - threshold) < 1e-9 for k in range(1, steps + 1) for v0 in (0.0, threshold / 2)):
        return None

    def first_crossing(v0: float) -> int | None:
        return next((k for k in range(1, steps + 1) if v(k, v0) >= threshold), None)

    t, count = first_crossing(threshold / 2), 0
    period = first_crossing(0.0)
    while t is not None and t <= steps:
        count += 1
        t = None if period is None else t + period
    return count


@given(current=st.floats(0.05, 2.0), threshold=st.floats(0.3, 2.0), leak=st.floats(0.5, 0.99),
       steps=st.integers(1, 32))
@settings(max_examples=200, deadline=None)
def test_lif_reset_to_zero_matches_closed_form(current: float, threshold: float, leak: float, steps: int) -> None:
    i = torch.full((1, steps, 1), current, dtype=torch.float64)
    neuron = Neuron("lif", steps, leak=leak, reset="zero")
    expected = _lif_zero_reset_count(current, threshold, leak, steps)
    assume(expected is not None)
    count = int(integrate(i, torch.tensor(threshold, dtype=torch.float64), neuron).sum())
    assert count == expected


def _one_core_graph(weight_int: np.ndarray, bias_int: np.ndarray, out_scale: float, steps: int):
    out_c, in_f = weight_int.shape
    quant = o.CoreQuant(
        weight_int=weight_int.reshape(out_c, in_f, 1, 1).astype(np.int64), weight_scale=np.full(out_c, 1.0),
        bias_int=bias_int.astype(np.int64), in_scale=np.full(in_f, 1.0 / steps), out_scale=out_scale,
        out_max=steps,
    )
    b = GraphBuilder()
    x = b.add("x", o.Input((in_f,), 1.0 / steps, steps))
    w = weight_int.reshape(out_c, in_f, 1, 1).astype(np.float32)
    core = b.add("core", o.CoreOp(w, bias_int.astype(np.float32), dense=True, quant=quant), x)
    return b.build([core])


@given(seed=st.integers(0, 10_000), steps=st.sampled_from([4, 8, 16]))
@settings(max_examples=40, deadline=None)
def test_if_core_with_small_positive_currents_equals_the_integer_simulator(seed: int, steps: int) -> None:
    """Each step's current stays below the threshold and never goes negative: no timing effect, so the spike
    count is exactly the integer simulator's code round(acc / theta) (ties excepted, made impossible here)."""
    rng = np.random.default_rng(seed)
    weight = rng.integers(0, 3, size=(5, 6))
    theta = float(weight.sum(axis=1).max()) + 1.0 + math.pi / 10  # > any one step's current, never a tie
    graph = _one_core_graph(weight, np.zeros(5), theta, steps)
    x = rng.integers(0, steps + 1, size=(64, 6)) / steps
    spiking, _, _ = run_spiking(graph, Neuron("if", steps), x, dtype=torch.float64)
    integer, _ = run_integer(graph, x)
    assert np.array_equal(spiking, integer)


def test_negative_current_after_spikes_shows_the_timing_effect() -> None:
    """A spike cannot be taken back: +1 early and -1 late nets zero, yet the neuron has fired."""
    steps = 8
    current = torch.tensor([[1.0] * 4 + [-1.0] * 4], dtype=torch.float64).reshape(1, steps, 1)
    spikes = integrate(current, torch.tensor(1.0, dtype=torch.float64), Neuron("if", steps))
    assert int(spikes.sum()) == 4  # the integer simulator's code for a net current of 0 would be 0


@given(current=st.floats(0.0, 3.0), threshold=st.floats(0.3, 2.0), steps=st.integers(1, 40))
@settings(max_examples=100, deadline=None)
def test_if_floor_constant_current_closed_form(current: float, threshold: float, steps: int) -> None:
    """A non-negative current never reaches the floor: the count is IF's, round(T*I/theta), at most T; a
    negative one never fires."""
    theta = torch.tensor(threshold, dtype=torch.float64)
    i = torch.full((1, steps, 1), current, dtype=torch.float64)
    count = int(integrate(i, theta, Neuron("if_floor", steps)).sum())
    expected = min(steps, math.floor(steps * current / threshold + 0.5))
    tie = abs(steps * current / threshold + 0.5 - round(steps * current / threshold + 0.5)) < 1e-9
    assert count == expected or (tie and abs(count - expected) <= 1)
    assert int(integrate(-i - 0.1, theta, Neuron("if_floor", steps)).sum()) == 0


def _negative_then_positive_counts(a: float, b: float, k: int, theta: float, steps: int) -> tuple[int, int] | None:
    """Counts of (if, if_floor) for -a over k steps then +b (<= theta: one spike a step at most) over the
    rest, from v0 = theta/2. IF carries the debt: round(((T-k) b - k a) / theta), at least 0. The floor
    forgives it: v_k = max(theta/2 - k a, 0), then floor((v_k + (T-k) b) / theta). None near a tie."""
    if_value = ((steps - k) * b - k * a) / theta + 0.5
    floor_value = (max(theta / 2 - k * a, 0.0) + (steps - k) * b) / theta
    if any(abs(v - round(v)) < 1e-9 for v in (if_value, floor_value)):
        return None
    return max(math.floor(if_value), 0), math.floor(floor_value)


@given(a=st.floats(0.01, 2.0), b_frac=st.floats(0.05, 1.0), k=st.integers(0, 16), threshold=st.floats(0.3, 2.0))
@settings(max_examples=100, deadline=None)
def test_if_floor_forgives_a_negative_current_that_if_remembers(a: float, b_frac: float, k: int,
                                                                threshold: float) -> None:
    steps, b = 16, b_frac * threshold
    expected = _negative_then_positive_counts(a, b, k, threshold, steps)
    assume(expected is not None)
    current = torch.tensor([-a] * k + [b] * (steps - k), dtype=torch.float64).reshape(1, steps, 1)
    theta = torch.tensor(threshold, dtype=torch.float64)
    got = tuple(int(integrate(current, theta, Neuron(m, steps)).sum()) for m in ("if", "if_floor"))
    assert got == expected


def test_if_floor_example_differs_from_if_by_the_forgiven_debt() -> None:
    """-1 for 4 steps then +0.5 for 12 (theta 1): IF nets 6 - 4 = 2 thresholds, the floor forgets the debt
    (and the half threshold it started with) and fires on all 6."""
    current = torch.tensor([-1.0] * 4 + [0.5] * 12, dtype=torch.float64).reshape(1, 16, 1)
    theta = torch.tensor(1.0, dtype=torch.float64)
    assert int(integrate(current, theta, Neuron("if", 16)).sum()) == 2
    assert int(integrate(current, theta, Neuron("if_floor", 16)).sum()) == 6
