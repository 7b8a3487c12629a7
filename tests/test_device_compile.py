"""A compile on a non-ideal device: the ideal device changes no report, drawn chips are reported and
reproducible, a known fault map is compiled for (and beats the same map ignored), a map that does not fit is
refused naming the crossbar."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from dse.compile import compile, load_model, prepare
from dse.cost.resources import crossbar_of
from dse.errors import ConfigError
from dse.hardware.device import Device
from dse.hardware.spec import IO, Crossbar, HardwareSpec, Weights
from dse.ir.ops import CoreOp
from dse.ir.serialize import load_graph, save_graph
from dse.sim.device_noise import draw_fault_map, load_fault_map
from dse.sim.montecarlo import MonteCarlo
from dse.sim.spares import PREFIX
from dse.tune import TuneOptions

CHIP = HardwareSpec(name="chip_a", crossbar=Crossbar(256, 256, 4, True), weights=Weights(8), io=IO(6, 8))
NONE = TuneOptions(mode="none")
TIMES = ("compile_seconds", "prepare_seconds", "evaluate_seconds", "steps", "passes")


@pytest.fixture(scope="module")
def prepared():
    graph, data = load_model("mlp_digits", "digits", calib_samples=200, test_samples=300)
    return prepare(graph, data, name="mlp_digits")


def _untimed(report: dict) -> dict:
    return {k: v for k, v in report.items() if k not in TIMES}


def test_an_ideal_device_changes_no_report(prepared) -> None:
    plain = compile(prepared, CHIP, tuning=NONE).report.to_dict()
    explicit = compile(prepared, dataclasses.replace(CHIP, device=Device()), tuning=NONE,
                       evaluate=MonteCarlo(1, 7)).report.to_dict()
    assert "device" not in plain and "device" not in plain["hardware"]
    assert "spare_columns" not in plain["hardware"]["crossbar"]  # no spare columns: as before the field existed
    assert _untimed(plain) == _untimed(explicit)


def test_drawn_chips_are_reported_and_reproducible(prepared) -> None:
    hw = dataclasses.replace(CHIP, device=Device(programming_sigma=0.05, adc_noise_lsb=0.5))
    first = compile(prepared, hw, tuning=NONE, evaluate=MonteCarlo(4, 3)).report
    again = compile(prepared, hw, tuning=NONE, evaluate=MonteCarlo(4, 3)).report
    d = first.device
    assert d.instances == 4 and len(d.accuracy_delta_pp) == 4
    assert d.accuracy_delta_pp == again.device.accuracy_delta_pp
    assert d.accuracy_delta_pp_mean == pytest.approx(np.mean(d.accuracy_delta_pp), abs=1e-6)
    assert d.accuracy_delta_pp_std == pytest.approx(np.std(d.accuracy_delta_pp, ddof=1), abs=1e-6)
    assert d.accuracy_delta_pp_p95 == pytest.approx(np.percentile(d.accuracy_delta_pp, 95), abs=1e-6)
    assert first.metrics == again.metrics  # the exact chip's metrics stay as they were
    assert first.to_dict()["device"]["instances"] == 4 and first.to_dict()["hardware"]["device"]["programming_sigma"]


def test_a_known_fault_map_is_compiled_for(prepared, tmp_path) -> None:
    plain = compile(prepared, CHIP, tuning=NONE)
    stuck = dataclasses.replace(CHIP, device=Device(stuck_low=0.01, stuck_high=0.01))
    path = tmp_path / "faults.npz"
    np.savez(path, **draw_fault_map(plain.graph, stuck, seed=0))
    deltas = {}
    for known in (False, True):
        hw = dataclasses.replace(CHIP, device=Device(fault_map=str(path), fault_map_known=known))
        report = compile(prepared, hw, tuning=NONE).report
        assert [p.name for p in report.passes].count("fault_correct") == int(known)
        deltas[known] = report.device.accuracy_delta_pp_mean
    assert deltas[True] <= deltas[False] / 2, deltas


def test_a_fault_map_is_read_once_per_compile(prepared, tmp_path, monkeypatch) -> None:
    """"fault_correct" and "evaluate" each read the file (and the command line once more, before any work); read
    once, or given the map its caller read, the compile's report is the same."""
    plain = compile(prepared, CHIP, tuning=NONE)
    path = tmp_path / "faults.npz"
    faults = draw_fault_map(plain.graph, dataclasses.replace(CHIP, device=Device(stuck_low=0.01)), seed=0)
    np.savez(path, **faults)
    hw = dataclasses.replace(CHIP, device=Device(fault_map=str(path)))
    reads, real_load = [], np.load
    monkeypatch.setattr(np, "load", lambda file, *a, **k: (reads.append(str(file)), real_load(file, *a, **k))[1])
    read_here = compile(prepared, hw, tuning=NONE).report.to_dict()
    assert reads.count(str(path)) == 1
    given = compile(prepared, hw, tuning=NONE, fault_map=faults).report.to_dict()
    assert reads.count(str(path)) == 1
    assert [p["name"] for p in read_here["passes"]].count("fault_correct") == 1
    for report in (read_here, given):
        del report["device"]["seconds"]
    assert _untimed(read_here) == _untimed(given)
    with pytest.raises(ConfigError, match=r"^compile\(fault_map=\.\.\.\) is given a fault map, but hw\.device"):
        compile(prepared, CHIP, tuning=NONE, fault_map=faults)  # a map the chip does not name was ignored


def test_a_fault_map_that_does_not_fit_is_refused(prepared, tmp_path) -> None:
    plain = compile(prepared, CHIP, tuning=NONE)
    faults = draw_fault_map(plain.graph, dataclasses.replace(CHIP, device=Device(stuck_low=0.01)), seed=0)
    name = next(iter(faults))
    faults[name] = faults[name][:, :, :-1]
    np.savez(tmp_path / "bad.npz", **faults)
    hw = dataclasses.replace(CHIP, device=Device(fault_map=str(tmp_path / "bad.npz")))
    with pytest.raises(ConfigError, match=f"crossbar {name!r} has cells"):
        compile(prepared, hw, tuning=NONE)


def test_an_empty_or_truncated_fault_map_is_one_line(tmp_path) -> None:
    """They were an EOFError and a BadZipFile traceback (a PassError in fault_correct, after the tuning)."""
    np.savez(tmp_path / "whole.npz", a=np.zeros((1, 2, 3), np.int8))
    (tmp_path / "empty.npz").write_bytes(b"")
    (tmp_path / "cut.npz").write_bytes((tmp_path / "whole.npz").read_bytes()[:100])
    for name, why in (("empty.npz", "the file is empty: a fault map is the .npz python -m dse.sim.fault_map "
                                    "writes"), ("cut.npz", "File is not a zip file")):
        with pytest.raises(ConfigError, match=rf"^hardware\.device\.fault_map: cannot read .*{name} \({why}\)$"):
            load_fault_map(str(tmp_path / name))


def test_spare_columns_repair_a_known_chip(prepared, tmp_path) -> None:
    """The same stuck cells with and without 2 spare columns per crossbar: the repaired chip records its repairs
    (at most 2 per crossbar, carried by compiled.npz) and loses no more than the one without spares."""
    spared = dataclasses.replace(CHIP, crossbar=dataclasses.replace(CHIP.crossbar, spare_columns=2))
    plain = compile(prepared, CHIP, tuning=NONE)
    faults = draw_fault_map(plain.graph, dataclasses.replace(spared, device=Device(stuck_low=0.01, stuck_high=0.01)),
                            seed=0)
    np.savez(tmp_path / "spared.npz", **faults)
    np.savez(tmp_path / "plain.npz", **{k: v for k, v in faults.items() if not k.startswith(PREFIX)})
    result = compile(prepared, dataclasses.replace(spared, device=Device(fault_map=str(tmp_path / "spared.npz"))),
                     tuning=NONE)
    without = compile(prepared, dataclasses.replace(CHIP, device=Device(fault_map=str(tmp_path / "plain.npz"))),
                      tuning=NONE).report
    repaired = {n.name: n.op for n in result.graph.of_type(CoreOp) if n.op.quant.spare_of is not None}
    assert repaired
    for op in repaired.values():
        spare_of, crossbar = op.quant.spare_of, crossbar_of(op, spared)
        for b in np.unique(crossbar):
            used = spare_of[:, :, crossbar == b]
            assert len(np.unique(used[used >= 0])) == (used >= 0).sum() <= 2  # each spare used once
    save_graph(result.graph, tmp_path / "compiled.npz")
    loaded = {n.name: n.op for n in load_graph(tmp_path / "compiled.npz")[0].of_type(CoreOp)}
    for name, op in repaired.items():
        np.testing.assert_array_equal(loaded[name].quant.spare_of, op.quant.spare_of)
    assert result.report.device.accuracy_delta_pp_mean <= without.device.accuracy_delta_pp_mean
    # the map drawn for 2 spares serves a chip with none (or 1: its first) as the map without them
    unspared = compile(prepared, dataclasses.replace(CHIP, device=Device(fault_map=str(tmp_path / "spared.npz"))),
                       tuning=NONE).report
    assert unspared.device.accuracy_delta_pp == without.device.accuracy_delta_pp
    one = dataclasses.replace(spared, crossbar=dataclasses.replace(spared.crossbar, spare_columns=1))
    one_graph = compile(prepared, dataclasses.replace(one, device=Device(fault_map=str(tmp_path / "spared.npz"))),
                        tuning=NONE).graph
    used = [int(n.op.quant.spare_of.max()) for n in one_graph.of_type(CoreOp) if n.op.quant.spare_of is not None]
    assert used and max(used) == 0
    ignored = dataclasses.replace(spared, device=Device(fault_map=str(tmp_path / "spared.npz"), fault_map_known=False))
    assert all(n.op.quant.spare_of is None for n in compile(prepared, ignored, tuning=NONE).graph.of_type(CoreOp))
    with pytest.raises(ConfigError, match="has no spare columns"):
        compile(prepared, dataclasses.replace(spared, device=Device(fault_map=str(tmp_path / "plain.npz"))),
                tuning=NONE)
