"""Cross-check of the spiking cost model against SANA-FE (PyPI `sanafe`, GPL: a test-only extra, never imported by
dse). The compiled network's spikes are replayed in SANA-FE on the same placement with the same per-event
coefficients (see sanafe_replay.py); SANA-FE counts events, updates, messages and hops itself.

What agrees and why: the synaptic events and the neuron updates and spikes are the same counts, so the synapse and
soma energies agree to rounding; the step schedule (each layer's window from its level, the busiest core setting a
step) is SANA-FE's, so the latency agrees to a fraction of a percent when a layer's spikes are spread evenly over
its window. The NoC term differs: dse's SpikeStats keeps each layer's total spikes, so the model spreads them
evenly over the layer's neurons, while SANA-FE routes each neuron's own spikes (with per-neuron counts the two
agree exactly; docs/cost.md). SANA-FE has no static power: the comparison leaves it out.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sanafe")

from cost_graphs import SPIKING_CHIP, preset, two_dense  # noqa: E402
from sanafe_replay import run_sanafe  # noqa: E402

from dse.compile import compile as compile_network  # noqa: E402
from dse.compile import load_model, prepare  # noqa: E402
from dse.cost.energy import network_cost  # noqa: E402
from dse.cost.model import SpikingCost  # noqa: E402
from dse.cost.placement import build_mesh, core_traffic, place  # noqa: E402
from dse.cost.resources import depth, layer_resources  # noqa: E402
from dse.sim.spiking import run_spiking  # noqa: E402
from dse.tune import TuneOptions  # noqa: E402

PJ = 1e-12


def against_sanafe(graph, hw, x: np.ndarray) -> tuple[object, dict]:
    """Our cost of one sample `x` and SANA-FE's result on the same placement."""
    coeffs = SpikingCost()
    _, stats, _ = run_spiking(graph, hw.neuron, x[None])
    layers = layer_resources(graph, hw)
    cost = network_cost(graph, hw, coeffs, layers, stats)
    traffic = core_traffic(graph, hw, layers, stats)
    mesh = build_mesh(traffic.cores, hw.mapping.cores_per_chip)
    xy = place(traffic, mesh, cost.placement).xy
    return cost, run_sanafe(graph, hw, layers, coeffs, mesh, xy, x, depth(graph))


def test_a_two_layer_network_against_sanafe() -> None:
    graph = two_dense(hidden=64, out_max=4)
    x = np.random.default_rng(0).integers(0, 5, 64).astype(np.float32)
    cost, result = against_sanafe(graph, SPIKING_CHIP, x)
    ours = cost.energy_pj()
    assert result["timesteps_executed"] == cost.extra["latency_steps"]
    assert result["energy"]["synapse"] / PJ == pytest.approx(ours["synapses"], rel=1e-9)
    assert result["energy"]["soma"] / PJ == pytest.approx(ours["neurons"] + ours["spikes"], rel=1e-9)
    # one fc1 core sends to one fc2 core: the spikes, not their spread over the neurons, set the NoC energy
    assert result["energy"]["network"] / PJ == pytest.approx(ours["noc"], rel=1e-9)
    assert result["sim_time"] * 1e9 == pytest.approx(cost.latency_ns, rel=0.10)


@pytest.mark.slow
def test_lenet_on_chip_b_against_sanafe() -> None:
    """Issue 12's acceptance: energy and latency within 10 %."""
    hw = preset("chip_b", cores_per_chip=16)
    graph, data = load_model("lenet_mnist", "mnist", calib_samples=64, test_samples=1)
    compiled = compile_network(prepare(graph, data, name="lenet_mnist"), hw, tuning=TuneOptions(mode="none")).graph
    cost, result = against_sanafe(compiled, hw, np.asarray(data.x_test[0:1])[0])
    ours = cost.energy_pj()
    dynamic = ours["total"] - ours["static"]
    theirs = result["energy"]
    print(f"lenet_mnist chip_b, one image: dse {dynamic:.0f} pJ (no static), SANA-FE {theirs['total'] / PJ:.0f} pJ; "
          f"NoC dse {ours['noc']:.0f} pJ, SANA-FE {theirs['network'] / PJ:.0f} pJ; "
          f"latency dse {cost.latency_ns:.0f} ns, SANA-FE {result['sim_time'] * 1e9:.0f} ns")
    assert result["energy"]["synapse"] / PJ == pytest.approx(ours["synapses"], rel=1e-9)
    assert result["energy"]["soma"] / PJ == pytest.approx(ours["neurons"] + ours["spikes"], rel=1e-9)
    assert result["energy"]["total"] / PJ == pytest.approx(dynamic, rel=0.10)
    assert result["energy"]["network"] / PJ == pytest.approx(ours["noc"], rel=0.25)  # evenly spread spikes
    assert result["sim_time"] * 1e9 == pytest.approx(cost.latency_ns, rel=0.10)
