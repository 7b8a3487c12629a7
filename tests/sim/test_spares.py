"""Spare columns: a hand-computed crossbar repaired onto a spare, fault maps with spares checked, the spec's
field refused when bad, and the area they add."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_device import conv_graph, dense_graph

from dse.cost.resources import crossbar_of
from dse.errors import ConfigError
from dse.hardware.device import Device
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir.ops import CoreOp
from dse.ir.serialize import save_graph
from dse.passes.faults import _moments
from dse.passes.spare_repair import repair
from dse.sim.device_noise import HIGH, LOW, CellLayout, check_fault_map, draw_fault_map, draw_instances
from dse.sim.fault_map import main as fault_map_main
from dse.sim.integer import run_integer
from dse.sim.montecarlo import run_instances
from dse.sim.spares import spare_key


def chip(spares: int, device: Device | None = None) -> HardwareSpec:
    """5-bit differential weights (4 magnitude bits) on 2-bit cells: slices of place value 1 and 4, in a positive
    and a negative column; 8 x 16 crossbars (4 neurons each) with `spares` spare columns."""
    return HardwareSpec(crossbar=Crossbar(8, 16, 2, True, spare_columns=spares), weights=Weights(5), io=IO(4, 8),
                        device=device or Device())


W = np.array([[5, -3, 0], [-15, 2, 1]])
X = np.array([[3, 1, 2], [0, 4, 1], [9, 9, 9]], np.float64)


def _repaired_outputs(spare_cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """w[0, 0] = 5 with its positive high cell stuck high and its negative high cell stuck low: the nearest the
    pair reaches is 3 * 4 + 0 - 3 = 9. One spare column of cells `spare_cells` (3,) repairs one of the two."""
    graph = dense_graph(W, np.array([2, 41]), mult=0.5)
    hw = chip(1)
    faults = np.zeros((2, 2, 2, 3, 1, 1), np.int8)  # (slice, column, out, in, 1, 1)
    faults[1, 0, 0, 0], faults[1, 1, 0, 0] = HIGH, LOW
    core = graph["core"].op
    spare_of = repair(core, CellLayout.of(hw), faults, spare_cells.reshape(1, 1, 3, 1, 1), crossbar_of(core, hw),
                      _moments(core, X))
    quant = dataclasses.replace(core.quant, spare_of=spare_of)
    repaired = graph.replace_nodes([dataclasses.replace(n, op=dataclasses.replace(core, quant=quant))
                                    if n.name == "core" else n for n in graph])
    inst = draw_instances(repaired, hw, 1, seed=0,
                          fault_map={"core": faults, spare_key("core"): spare_cells.reshape(1, 1, 3, 1, 1)})
    return spare_of, run_instances(repaired, hw, X, inst)[0]


def test_a_stuck_column_repaired_onto_a_working_spare_computes_the_fault_free_output() -> None:
    spare_of, out = _repaired_outputs(np.zeros(3, np.int8))
    assert (spare_of >= 0).sum() == 1 and (spare_of[1, :, 0] == 0).any()  # one of the two high columns of out 0
    np.testing.assert_array_equal(out, run_integer(dense_graph(W, np.array([2, 41]), mult=0.5), X)[0])


def test_a_spare_with_its_own_stuck_cell_takes_the_column_where_it_harms_least() -> None:
    """The spare's cell on row 0 is stuck high. In the positive column it leaves the pair as it was (3 and 0:
    w = 9, no better): not taken. In the negative column, both high cells read 3: w = p0 - n0, at best 3 = 5 - 2.
    By hand, code = round((W' x + b) * 0.5) clipped to [0, 255], W' = [[3, -3, 0], [-15, 2, 1]], b = (2, 41):
    (3, 1, 2): 9 - 3 + 2 = 8 -> 4;  -45 + 2 + 2 + 41 = 0 -> 0
    (0, 4, 1): -12 + 2 = -10 -> 0;  8 + 1 + 41 = 50 -> 25
    (9, 9, 9): 27 - 27 + 2 = 2 -> 1;  -108 + 41 < 0 -> 0"""
    spare_of, out = _repaired_outputs(np.array([HIGH, 0, 0], np.int8))
    expected = np.full((2, 2, 2), -1)
    expected[1, 1, 0] = 0
    np.testing.assert_array_equal(spare_of, expected)
    np.testing.assert_array_equal(out, [[4, 0], [0, 25], [1, 0]])


def test_fault_maps_draw_the_spares_cells_and_refuse_ones_that_do_not_fit() -> None:
    graph, hw = conv_graph(), chip(2, Device(stuck_low=0.2, stuck_high=0.2))
    faults = draw_fault_map(graph, hw, seed=0)
    check_fault_map(graph, hw, faults, "f.npz")
    for node in graph.of_type(CoreOp):
        crossbars = int(crossbar_of(node.op, hw).max()) + 1
        assert faults[spare_key(node.name)].shape == (crossbars, 2, *node.op.weight.shape[1:])
    fewer = draw_fault_map(graph, dataclasses.replace(hw, crossbar=dataclasses.replace(hw.crossbar, spare_columns=1)),
                           seed=0)
    for name, cells in fewer.items():  # the same cells, the first spare the same: maps nest whatever the count
        np.testing.assert_array_equal(cells, faults[name] if name in graph else faults[name][:, :1])
    with pytest.raises(ConfigError, match="crossbar 'pool' has spare cells"):  # fewer spares than the chip's
        check_fault_map(graph, hw, {**faults, spare_key("pool"): fewer[spare_key("pool")]}, "f.npz")
    with pytest.raises(ConfigError, match="crossbar 'pool' has spare cells"):  # not the crossbars' fan-in
        check_fault_map(graph, hw, {**faults, spare_key("pool"): faults[spare_key("pool")][..., :1]}, "f.npz")
    without = {k: v for k, v in faults.items() if not k.startswith("spare_columns/")}
    with pytest.raises(ConfigError, match="crossbar '.*' has no spare columns"):
        check_fault_map(graph, hw, without, "f.npz")
    with pytest.raises(ConfigError, match="crossbar 'nope' is not a core-op"):
        check_fault_map(graph, hw, {**faults, spare_key("nope"): faults[spare_key("pool")]}, "f.npz")
    for count in (0, 1):  # a map drawn for more spares serves a chip with fewer (its first ones): sweepable
        fewer_chip = dataclasses.replace(hw, crossbar=dataclasses.replace(hw.crossbar, spare_columns=count))
        check_fault_map(graph, fewer_chip, faults, "f.npz")


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_a_bad_spare_count_is_refused_with_one_line(value: object) -> None:
    with pytest.raises(ConfigError, match="hardware.crossbar.spare_columns must be an integer >= 0"):
        HardwareSpec.from_dict({"crossbar": {"spare_columns": value}})


def test_no_spare_columns_leave_the_report_as_it_was() -> None:
    assert "spare_columns" not in HardwareSpec().to_dict()["crossbar"]
    assert chip(3).to_dict()["crossbar"]["spare_columns"] == 3
    assert HardwareSpec.from_dict(chip(3).to_dict()) == chip(3)


def test_the_fault_map_command_draws_spares_for_the_chip_it_is_told(tmp_path, capsys) -> None:
    graph = conv_graph()
    save_graph(graph, tmp_path / "compiled.npz", meta={"report": {"hardware": chip(0).to_dict()}})
    args = [str(tmp_path / "compiled.npz"), str(tmp_path / "f.npz"), "--stuck-low", "0.1"]
    assert fault_map_main(args) == 0
    assert not any(k.startswith("spare_columns/") for k in np.load(tmp_path / "f.npz").files)
    assert fault_map_main([*args, "--spare-columns", "2"]) == 0
    with np.load(tmp_path / "f.npz") as data:
        faults = {k: data[k] for k in data.files}
    check_fault_map(graph, chip(2), faults, "f.npz")
    assert fault_map_main([*args, "--spare-columns", "-1"]) == 2
    assert "hardware.crossbar.spare_columns must be an integer >= 0" in capsys.readouterr().err


@pytest.mark.parametrize(("out", "extra", "message"), [
    # was numpy's ValueError, a traceback
    ("f.npz", ["--seed", "-1"], "error: --seed must be an integer >= 0 (got -1)"),
    ("no_such_folder/f.npz", [], "error: cannot write {tmp}/no_such_folder/f.npz (No such file or directory)"),
])
def test_the_fault_map_command_refuses_with_one_line_and_writes_nothing(tmp_path, capsys, out, extra, message):
    save_graph(conv_graph(), tmp_path / "compiled.npz", meta={"report": {"hardware": chip(0).to_dict()}})
    assert fault_map_main([str(tmp_path / "compiled.npz"), str(tmp_path / out), *extra]) == 2
    assert capsys.readouterr().err.strip() == message.format(tmp=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compiled.npz"]


def test_the_fault_map_command_refuses_to_write_over_the_compiled_network(tmp_path, capsys) -> None:
    """It wrote the map over compiled.npz (exit 0): the compile was lost, and the next read of it failed."""
    save_graph(conv_graph(), tmp_path / "compiled.npz", meta={"report": {"hardware": chip(0).to_dict()}})
    before = (tmp_path / "compiled.npz").read_bytes()
    (tmp_path / "link.npz").symlink_to(tmp_path / "compiled.npz")
    for out in ("compiled.npz", "link.npz"):
        assert fault_map_main([str(tmp_path / "compiled.npz"), str(tmp_path / out)]) == 2
        assert capsys.readouterr().err == (f"error: {tmp_path / out} is the compiled network {tmp_path}/compiled.npz; "
                                           "name another file for the fault map\n")
    assert (tmp_path / "compiled.npz").read_bytes() == before


def test_the_fault_map_command_writes_over_a_fault_map_and_nothing_else(tmp_path, capsys, monkeypatch) -> None:
    """It wrote the map over any file named: a run's report.json, another run's compiled network, a dataset's
    .npz (lost, exit 0). What an .npz holds is told from its arrays' headers: the dataset is not loaded."""
    save_graph(conv_graph(), tmp_path / "compiled.npz", meta={"report": {"hardware": chip(0).to_dict()}})
    save_graph(conv_graph(), tmp_path / "other.npz")
    (tmp_path / "report.json").write_text('{"legal": true}\n')
    np.savez(tmp_path / "data.npz", x=np.zeros((5, 1, 4, 4), np.float32), y=np.zeros(5, np.int64))
    np.savez(tmp_path / "empty.npz")
    for out, what in (("report.json", "not an .npz archive (it begins with JSON text)"),
                      ("other.npz", "it holds a compiled network ('__graph__')"),
                      ("data.npz", "it holds a dataset's arrays ('x', 'y')")):
        before = (tmp_path / out).read_bytes()
        with monkeypatch.context() as m:  # the refusal reads no array of the file it refuses to write over
            m.setattr(np.lib.format, "read_array", lambda *a, **k: pytest.fail("an array was read"))
            assert fault_map_main([str(tmp_path / "compiled.npz"), str(tmp_path / out)]) == 2
        assert capsys.readouterr().err == (f"error: {tmp_path / out} exists and is not a fault map ({what}); name "
                                           "another file for the fault map\n")
        assert (tmp_path / out).read_bytes() == before
    args = [str(tmp_path / "compiled.npz"), str(tmp_path / "f.npz")]
    assert fault_map_main(args) == 0 and fault_map_main([*args, "--seed", "1"]) == 0  # drawn again
    assert fault_map_main([str(tmp_path / "compiled.npz"), str(tmp_path / "empty.npz")]) == 0  # nothing to lose


def test_the_fault_map_is_written_under_the_name_given(tmp_path) -> None:
    """numpy adds ".npz" to a name without it; the map is where the user said (and the compile reads it there)."""
    graph = conv_graph()
    save_graph(graph, tmp_path / "compiled.npz", meta={"report": {"hardware": chip(0).to_dict()}})
    assert fault_map_main([str(tmp_path / "compiled.npz"), str(tmp_path / "faults"), "--stuck-low", "0.1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compiled.npz", "faults"]
    with np.load(tmp_path / "faults") as data:
        check_fault_map(graph, chip(0), {k: data[k] for k in data.files}, "faults")


def test_drawn_chips_on_top_of_the_map_read_a_repaired_column_from_its_spare() -> None:
    """The crossbar of the test above, the spare (stuck high on row 0) in w[0, 0]'s negative high column, and 1 %
    programming variation: on every drawn chip both high cells of w[0, 0] read 3 and only its low cells vary, so
    it stays near 3 (its own negative high cell, stuck low, would leave it near 9)."""
    graph = dense_graph(W, np.array([2, 41]), mult=0.5)
    faults = np.zeros((2, 2, 2, 3, 1, 1), np.int8)
    faults[1, 0, 0, 0], faults[1, 1, 0, 0] = HIGH, LOW
    spare_of = np.full((2, 2, 2), -1, np.int16)
    spare_of[1, 1, 0] = 0
    core = graph["core"].op
    repaired = graph.replace_nodes([dataclasses.replace(n, op=dataclasses.replace(
        core, quant=dataclasses.replace(core.quant, spare_of=spare_of))) if n.name == "core" else n for n in graph])
    spare = np.zeros((1, 1, 3, 1, 1), np.int8)
    spare[0, 0, 0] = HIGH
    hw = chip(1, Device(programming_sigma=0.01))
    for g, near in ((repaired, 3.0), (graph, 9.0)):
        inst = draw_instances(g, hw, 5, seed=0, fault_map={"core": faults, spare_key("core"): spare})
        w00 = inst.weights["core"][:, 0, 0, 0, 0].numpy()
        assert np.abs(w00 - near).max() < 0.5 and w00.std() > 0, (near, w00)
