"""NIR export against an independent consumer: sinabs reads `compiled.nir` and must spike as our simulator does.

sinabs (SynSense) maps NIR's Affine/Conv2d/Flatten/IF/LIF onto its own torch layers and neurons
(`sinabs.from_nir`); we only feed it the host's input trains, start its membranes at the exported
``v_init`` and pick, among its own options, the neuron the chip has. Three of those choices are needed
because sinabs's importer fixes them and NIR 1.0.4 cannot say them:

- `SingleSpike`: a chip neuron emits at most one spike per step; sinabs defaults to `MultiSpike`
  (``floor(v / threshold)`` spikes at once, as its Speck chip does).
- no lower bound on the membrane: sinabs's importer clips an IF membrane at ``-v_threshold``; ours is not
  clipped.
- the reset the chip has (`MembraneSubtract` or `MembraneReset`, from the node's ``reset`` metadata).

The comparison is of spike counts over the T steps, per neuron, for every core of the network.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import nir
import numpy as np
import pytest
import sinabs
import torch
from sinabs.activation import MembraneReset, MembraneSubtract, SingleSpike

from dse.data.loading import load_dataset
from dse.errors import ConfigError, UnsupportedOpError
from dse.frontends.nir_export import export_nir, input_trains, write_nir
from dse.hardware.spec import HardwareSpec, Neuron
from dse.ir import ops as o
from dse.ir.graph import Graph, GraphBuilder
from dse.ir.serialize import load_graph
from dse.sim.spiking import run_spiking

STEPS = 16
SAMPLES = 100
# the chip's own neuron (IF, reset by subtraction, as chip_b) and the other dynamics the simulator has: the
# compiled integer weights do not depend on them, and the export must follow whichever the chip has
NEURONS = {
    "if_subtract": Neuron(model="if", timesteps=STEPS),
    "lif_subtract": Neuron(model="lif", timesteps=STEPS, leak=0.9),
    "if_zero": Neuron(model="if", timesteps=STEPS, reset="zero"),
    "lif_zero": Neuron(model="lif", timesteps=STEPS, leak=0.8, reset="zero"),
}
REPO = Path(__file__).resolve().parents[2]


def _text(value: object) -> str:
    """HDF5 gives strings back as bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _sinabs_counts(nir_graph: nir.NIRGraph, trains: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run the NIR graph in sinabs on trains (N, T, ...); per dse core its spike counts, and the output's."""
    n, steps = trains.shape[:2]
    model = sinabs.from_nir(nir_graph, batch_size=n)
    neurons = {k: v for k, v in nir_graph.nodes.items() if isinstance(v, nir.IF | nir.LIF)}
    for name, node in neurons.items():
        layer = model.get_submodule(name)
        layer.spike_fn = SingleSpike
        layer.min_v_mem = None
        layer.reset_fn = MembraneSubtract() if _text(node.metadata["reset"]) == "subtract" else MembraneReset()
        layer.init_state_with_shape((n, *node.v_threshold.shape))
        layer.v_mem.data.copy_(torch.as_tensor(node.metadata["v_init"]).expand_as(layer.v_mem))
    with torch.no_grad():
        out, state = model(trains.reshape(n * steps, *trains.shape[2:]))
    counts = {}
    for name, node in neurons.items():
        layer_counts = state.cache[name].reshape(n, steps, *node.v_threshold.shape).sum(dim=1).numpy()
        bounds = node.metadata["dse_core_channels"]
        for i, core in enumerate(_text(node.metadata["dse_cores"]).split(",")):
            counts[core] = layer_counts[:, bounds[i] : bounds[i + 1]]
    return counts, out.reshape(n, steps, *out.shape[1:]).sum(dim=1).numpy()


def _compare(graph: Graph, hw: HardwareSpec, x: np.ndarray, nir_graph: nir.NIRGraph) -> float:
    """Fraction of neurons (over all cores and samples) whose count sinabs and `run_spiking` agree on; also
    checks the host's decoding of the output."""
    cores = tuple(n.name for n in graph.of_type(o.CoreOp))
    decoded, _, ours = run_spiking(graph, hw.neuron, x, batch_size=len(x), keep=cores)
    theirs, out_counts = _sinabs_counts(nir_graph, input_trains(graph, hw, x))
    assert set(theirs) == set(cores)
    agree = sum(int((theirs[c] == ours[c]).sum()) for c in cores) / sum(ours[c].size for c in cores)
    meta = nir_graph.metadata
    assert _text(meta["outputs"]) == "output"
    copies = int(meta["output_copies"])  # a population readout: sum the copies (copy-major) first
    out_counts = out_counts.reshape(len(out_counts), copies, -1).sum(axis=1)
    half = out_counts.shape[1] // 2
    if _text(meta["output_decode"]).startswith("(count[:C]"):
        host = (out_counts[:, :half] - out_counts[:, half:]) * float(meta["output_scale"])
    else:
        host = out_counts * float(meta["output_scale"])
    if agree == 1.0:
        np.testing.assert_allclose(host, decoded, rtol=1e-6, atol=1e-6)
    return agree


def _expect(agree: float, neuron: Neuron) -> None:
    if neuron.model == "if":  # same float32 operations in the same order: bit for bit
        assert agree == 1.0
    else:
        # sinabs decays by exp(-1/tau) in float32, which may miss float32(leak) by one ulp: a membrane that
        # lands within that of its threshold may then fire a step apart. Seen equal; allow 0.1 %.
        assert agree >= 0.999


# --- a real compiled network, through the compile CLI ---------------------------------------------------------


@pytest.fixture(scope="module")
def compiled_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m dse.compile` of mlp_digits for chip_b, with short tuning (its accuracy is not the point), on
    crossbars of 32 rows: every layer is split, so the export holds grouped merges behind routed sums; its
    logits leave the chip as 2 copies (`strategy.readout_k=2`), which the host sums."""
    run_dir = tmp_path_factory.mktemp("compile") / "run"
    cmd = [sys.executable, "-m", "dse.compile", "model=mlp_digits", "hardware=chip_b", "tuning.free_steps=30",
           "hardware.crossbar.rows=32", "tuning.range_steps=10", "tuning.round_steps=5", "tuning.spike_steps=10",
           "tuning.output_spike_steps=10", "strategy.readout_k=2", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


def test_compile_cli_writes_compiled_nir_for_a_spiking_chip(compiled_run: Path) -> None:
    assert (compiled_run / "compiled.nir").is_file()
    assert not list(compiled_run.glob(".compiled.nir.*"))  # written through a temporary file, then renamed
    graph = nir.read(compiled_run / "compiled.nir")
    assert _text(graph.metadata["generator"]) == "dse"
    assert int(graph.metadata["timesteps"]) == STEPS
    assert {type(n).__name__ for n in graph.nodes.values()} == {"Input", "Flatten", "Affine", "IF", "Output"}


@pytest.mark.parametrize("variant", list(NEURONS))
def test_compiled_mlp_spikes_as_in_sinabs(compiled_run: Path, variant: str) -> None:
    graph, meta = load_graph(compiled_run / "compiled.npz")
    hw = HardwareSpec.from_dict(meta["report"]["hardware"])
    assert (hw.neuron.model, hw.neuron.timesteps, hw.neuron.reset) == ("if", STEPS, "subtract")
    x = load_dataset("digits").x_test[:SAMPLES]
    if variant == "if_subtract":  # the chip's own neuron: the very file the CLI wrote
        nir_graph = nir.read(compiled_run / "compiled.nir")
    else:
        hw = dataclasses.replace(hw, neuron=NEURONS[variant])
        nir_graph = export_nir(graph, hw)
    _expect(_compare(graph, hw, x, nir_graph), hw.neuron)


# --- a convolutional network with every kind of wiring, built from dse.ir ops ------------------------------


def _core(rng: np.random.Generator, out_c: int, in_c: int, kernel: int = 1, *, groups: int = 1,
          stride: int = 1, padding: int = 0, dense: bool = False, threshold: tuple[float, float] = (4.0, 12.0),
          ) -> o.CoreOp:
    """A core in integer form: 4-bit weights, small biases, per-channel thresholds (never ties with the
    integer currents: they are irrational)."""
    shape = (out_c, in_c // groups, kernel, kernel)
    weight = rng.integers(-7, 8, size=shape)
    bias = rng.integers(-2 * STEPS, 3 * STEPS, size=out_c)
    theta = rng.uniform(*threshold, size=out_c) * (1 + np.sqrt(2) / 1000)
    out_scale = 0.05
    quant = o.CoreQuant(weight_int=weight.astype(np.int64), weight_scale=out_scale / theta,
                        bias_int=bias.astype(np.int64), in_scale=np.full(in_c, 1.0 / STEPS), out_scale=out_scale,
                        out_max=STEPS)
    return o.CoreOp(weight.astype(np.float32), bias.astype(np.float32), stride=(stride, stride),
                    padding=(padding,) * 4, groups=groups, dense=dense, quant=quant)


def _conv_graph(seed: int = 0) -> Graph:
    """Host-side pad (non-zero value), convolution, zero Pad folded into a strided grouped convolution, two
    cores on overlapping channel slices joined by a Concat, a flatten, a split dense layer (partial-sum cores
    on feature slices, concatenated, merged) and a differential readout."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.add("input", o.Input((2, 9, 9), 1.0 / STEPS, STEPS))
    x = b.add("host_pad", o.Pad((1, 1, 1, 1), (0.25, 0.5)), x)
    c1 = b.add("conv1", _core(rng, 6, 2, 3), x)
    p1 = b.add("pad1", o.Pad((1, 1, 1, 1)), c1)
    c2 = b.add("conv2", _core(rng, 6, 6, 3, groups=3, stride=2, threshold=(3.0, 8.0)), p1)
    s_a = b.add("slice_a", o.Slice(0, 4), c2)
    s_b = b.add("slice_b", o.Slice(2, 6), c2)
    c3a = b.add("conv3a", _core(rng, 3, 4, 1, threshold=(2.0, 6.0)), s_a)
    c3b = b.add("conv3b", _core(rng, 3, 4, 1, threshold=(2.0, 6.0)), s_b)
    cat = b.add("conv3", o.Concat(0), c3a, c3b)
    flat = b.add("flat", o.Reshape((150,)), cat)
    parts = [b.add(f"fc_part{i}", _core(rng, 8, stop - start, dense=True, threshold=(6.0, 20.0)),
                   b.add(f"fc_in{i}", o.Slice(start, stop), flat))
             for i, (start, stop) in enumerate([(0, 100), (100, 150)])]
    partials = b.add("fc_partials", o.Concat(0), *parts)
    logits = b.add("logits", _core(rng, 6, 16, dense=True, threshold=(3.0, 9.0)), partials)
    out = b.add("readout", o.Readout(), logits)
    return b.build([out])


def _chip(neuron: Neuron) -> HardwareSpec:
    return HardwareSpec(name="chip_b_like", neuron=neuron)


# sinabs 3.1.3 cannot import a LIF layer of more than one axis (its importer tests `any(node.v_leak) != 0`,
# which is ambiguous for a (C, H, W) array): the leaky dynamics are compared on the dense network above
@pytest.mark.parametrize("variant", ["if_subtract", "if_zero"])
def test_conv_network_spikes_as_in_sinabs(tmp_path: Path, variant: str) -> None:
    graph, hw = _conv_graph(), _chip(NEURONS[variant])
    x = np.random.default_rng(1).random((SAMPLES, 2, 9, 9))
    write_nir(graph, hw, tmp_path / "conv.nir")
    nir_graph = nir.read(tmp_path / "conv.nir")
    _, _, counts = run_spiking(graph, hw.neuron, x, keep=("conv1", "conv2", "conv3a", "fc_part0", "logits"))
    for core, c in counts.items():  # every layer is busy but not saturated, or the comparison proves little
        assert 0.5 < c.mean() < STEPS - 0.5, (core, c.mean())
    _expect(_compare(graph, hw, x, nir_graph), hw.neuron)


def test_space_to_depth_is_a_fixed_conv_and_spikes_as_in_sinabs() -> None:
    """A SpaceToDepth (PixelUnshuffle) between two convolutions: a 0/1 Conv2d of kernel and stride the block
    between the first layer's neurons and the second's weights; sinabs counts every spike as dse does."""
    rng = np.random.default_rng(3)
    b = GraphBuilder()
    x = b.add("input", o.Input((2, 8, 8), 1.0 / STEPS, STEPS))
    c1 = b.add("conv1", _core(rng, 4, 2, 3, padding=1), x)
    moved = b.add("unshuffle", o.SpaceToDepth((2, 2)), c1)
    c2 = b.add("conv2", _core(rng, 6, 16, 1, threshold=(3.0, 8.0)), moved)
    flat = b.add("flat", o.Reshape((96,)), c2)
    logits = b.add("logits", _core(rng, 6, 96, dense=True, threshold=(6.0, 20.0)), flat)
    graph, hw = b.build([b.add("readout", o.Readout(), logits)]), _chip(NEURONS["if_subtract"])
    g = export_nir(graph, hw)
    unshuffle = g.nodes["unshuffle"]
    assert isinstance(unshuffle, nir.Conv2d) and tuple(unshuffle.stride) == (2, 2)
    assert unshuffle.weight.shape == (16, 4, 2, 2) and unshuffle.weight.sum() == 16
    assert ("conv1", "unshuffle") in g.edges and ("unshuffle", "conv2_weight") in g.edges
    x = np.random.default_rng(4).random((SAMPLES, 2, 8, 8))
    _, _, counts = run_spiking(graph, hw.neuron, x, keep=("conv1", "conv2", "logits"))
    for core, c in counts.items():
        assert 0.5 < c.mean() < STEPS - 0.5, (core, c.mean())
    assert _compare(graph, hw, x, g) == 1.0


def test_channels_last_input_is_sent_permuted_and_spikes_as_in_sinabs() -> None:
    """A channels-last input (data (H, W, C); the importer's Reshape, Gather, Reshape to (C, H, W)) with a
    host-side pad: the host sends the permuted, padded frame (the NIR input), `input_trains` permutes the trains,
    and sinabs counts every spike as dse does."""
    rng = np.random.default_rng(5)
    b = GraphBuilder()
    x = b.add("input", o.Input((7, 6, 2), 1.0 / STEPS, STEPS))
    order = np.arange(84).reshape(7, 6, 2).transpose(2, 0, 1).reshape(-1)
    x = b.add("image", o.Reshape((2, 7, 6)), b.add("perm", o.Gather(order), b.add("flat", o.Reshape((84,)), x)))
    x = b.add("host_pad", o.Pad((1, 1, 1, 1), (0.25, 0.5)), x)
    c1 = b.add("conv1", _core(rng, 4, 2, 3), x)
    flat = b.add("flat1", o.Reshape((168,)), c1)
    logits = b.add("logits", _core(rng, 6, 168, dense=True, threshold=(6.0, 20.0)), flat)
    graph, hw = b.build([b.add("readout", o.Readout(), logits)]), _chip(NEURONS["if_subtract"])
    g = export_nir(graph, hw)
    assert list(g.nodes["input"].input_type["input"]) == [2, 9, 8] and ("input", "conv1_weight") in g.edges
    np.testing.assert_array_equal(g.metadata["host_permutation"], order)
    x = np.random.default_rng(6).random((SAMPLES, 7, 6, 2))
    _, _, counts = run_spiking(graph, hw.neuron, x, keep=("conv1", "logits"))
    for core, c in counts.items():
        assert 0.5 < c.mean() < STEPS - 0.5, (core, c.mean())
    assert _compare(graph, hw, x, g) == 1.0


def test_conv_export_folds_the_wiring_into_a_chain_of_nir_layers() -> None:
    graph = _conv_graph()
    g = export_nir(graph, _chip(NEURONS["if_subtract"]))
    kinds = {name: type(node).__name__ for name, node in g.nodes.items()}
    # sibling cores joined by a Concat are one layer; slices are zero blocks of weights; the graph is a chain
    assert sorted(k for k, v in kinds.items() if v == "IF") == ["conv1", "conv2", "conv3", "fc_partials", "logits"]
    assert sorted(set(kinds.values())) == ["Affine", "Conv2d", "Flatten", "IF", "Input", "Output"]
    assert len(g.edges) == len(g.nodes) - 1 and len({dst for _, dst in g.edges}) == len(g.edges)
    # the host pads the input frame; the zero pad becomes the convolution's padding; groups are written out
    assert list(g.nodes["input"].input_type["input"]) == [2, 11, 11]
    conv2 = g.nodes["conv2_weight"]
    assert tuple(conv2.padding) == (1, 1) and tuple(conv2.stride) == (2, 2) and conv2.groups == 1
    assert conv2.weight.shape == (6, 6, 3, 3) and not conv2.weight[0, 2:].any()
    conv3 = g.nodes["conv3_weight"].weight  # conv3b reads channels 2..5 of conv2
    assert not conv3[3:, :2].any() and not conv3[:3, 4:].any()
    assert list(g.nodes["conv3"].metadata["dse_core_channels"]) == [0, 3, 6]


def test_a_core_reading_two_layers_gets_one_weight_node_per_layer() -> None:
    """A residual-like merge: NIR sums the two weight nodes' currents at the neuron node, the bias enters once.
    (Not run in sinabs: nirtorch 2.0.2 executes depth first and would fire the merge before its second
    branch has run.)"""
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.add("input", o.Input((10,), 1.0 / STEPS, STEPS))
    a = b.add("a", _core(rng, 8, 10, dense=True), x)
    c = b.add("b", _core(rng, 8, 8, dense=True), a)
    d = b.add("d", _core(rng, 6, 16, dense=True), b.add("both", o.Concat(0), a, c))
    graph = b.build([d])
    g = export_nir(graph, _chip(NEURONS["if_subtract"]))
    assert sorted(src for src, dst in g.edges if dst == "d") == ["d_weight_0", "d_weight_1"]
    assert ("a", "d_weight_0") in g.edges and ("b", "d_weight_1") in g.edges
    q = graph["d"].op.quant
    w = q.weight_int.reshape(6, 16)
    np.testing.assert_array_equal(g.nodes["d_weight_0"].weight, w[:, :8])
    np.testing.assert_array_equal(g.nodes["d_weight_1"].weight, w[:, 8:])
    np.testing.assert_array_equal(g.nodes["d_weight_0"].bias, (q.bias_int / STEPS).astype(np.float32))
    assert not g.nodes["d_weight_1"].bias.any()

    # an output gathered from two layers: fixed 0/1 weights place each range, the Output sums them
    g = export_nir(b.build([d, "both"]), _chip(NEURONS["if_subtract"]))
    gathers = sorted(src for src, dst in g.edges if dst == "output_both")
    assert gathers == ["both_gather", "both_gather_1"]
    placed = g.nodes["both_gather"].weight + g.nodes["both_gather_1"].weight
    np.testing.assert_array_equal(placed, np.vstack([np.eye(8), np.eye(8)]))
    assert g.metadata["outputs"] == "output,output_both"


def test_neuron_parameters_follow_the_core_and_the_chip() -> None:
    graph = _conv_graph()
    core = graph["logits"].op
    q = core.quant
    theta = (q.out_scale / q.weight_scale).astype(np.float32)
    g = export_nir(graph, _chip(NEURONS["if_subtract"]))
    node = g.nodes["logits"]
    np.testing.assert_array_equal(node.v_threshold, theta)
    np.testing.assert_array_equal(node.r, np.ones_like(theta))
    np.testing.assert_array_equal(node.metadata["v_init"], theta / 2)
    np.testing.assert_array_equal(g.nodes["logits_weight"].bias, (q.bias_int / STEPS).astype(np.float32))
    np.testing.assert_array_equal(g.nodes["logits_weight"].weight, q.weight_int.reshape(6, 16))
    assert node.metadata["reset"] == "subtract" and node.metadata["fire"] == "v >= v_threshold"
    conv1 = g.nodes["conv1"]  # per channel, broadcast over the positions
    assert conv1.v_threshold.shape == (6, 9, 9)

    lif = export_nir(graph, _chip(NEURONS["lif_zero"])).nodes["logits"]
    assert isinstance(lif, nir.LIF)
    np.testing.assert_allclose(np.exp(-1 / lif.tau), 0.8)  # decays by the leak over one step
    np.testing.assert_array_equal(lif.r, lif.tau)  # a step's charge moves v by the current
    assert not lif.v_leak.any() and lif.metadata["reset"] == "zero"
    meta = g.metadata
    assert meta["generator"] == "dse" and meta["dse_version"] and "v_init" in meta["semantics"]
    np.testing.assert_array_equal(meta["host_pad"], [1, 1, 1, 1])


def test_export_refuses_what_it_cannot_say() -> None:
    graph = _conv_graph()
    with pytest.raises(ConfigError, match="spiking chip"):
        export_nir(graph, HardwareSpec())
    b = GraphBuilder()
    x = b.add("input", o.Input((4,), 1.0 / STEPS, STEPS))
    float_core = dataclasses.replace(_core(np.random.default_rng(0), 2, 4, dense=True), quant=None)
    y = b.add("core", float_core, x)
    with pytest.raises(UnsupportedOpError, match="integer form"):
        export_nir(b.build([y]), _chip(NEURONS["if_subtract"]))
    b = GraphBuilder()
    x = b.add("input", o.Input((2, 5, 5), 1.0 / STEPS, STEPS))
    y = b.add("core", _core(np.random.default_rng(0), 2, 2, 3), x)
    y = b.add("pad", o.Pad((0, 0, 1, 1), (0.0,)), y)
    y = b.add("core2", _core(np.random.default_rng(1), 2, 2, 3), y)
    with pytest.raises(UnsupportedOpError, match="asymmetric padding"):
        export_nir(b.build([y]), _chip(NEURONS["if_subtract"]))
    moves = {  # a wiring op moving values onto a finer grid, the channels it gives, why it is refused
        "DepthToSpace": (o.DepthToSpace((2, 2), (10, 10)), 1, "onto a finer grid"),
    }
    for name, (op, channels, why) in moves.items():
        b = GraphBuilder()
        x = b.add("c0", _core(np.random.default_rng(0), 4, 4), b.add("input", o.Input((4, 5, 5), 1.0 / STEPS, STEPS)))
        y = b.add("core", _core(np.random.default_rng(1), 2, channels), b.add("moved", op, x))
        with pytest.raises(UnsupportedOpError, match=f"{name} at node 'moved': moves values .*{why}"):
            export_nir(b.build([y]), _chip(NEURONS["if_subtract"]))
    floor = r"no neuron with a membrane floor \(hardware\.neuron\.model=if_floor\)$"
    with pytest.raises(UnsupportedOpError, match=floor):  # NIR's IF would forget the floor
        export_nir(graph, _chip(Neuron(model="if_floor", timesteps=STEPS)))

