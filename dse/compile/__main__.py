"""`python -m dse.compile`: compile one network for one chip and write its report.

    python -m dse.compile hardware=chip_a strategy=split
    python -m dse.compile hardware=chip_a hardware.weights.bits=4 tuning=none
    python -m dse.compile model.onnx=my.onnx model.dataset=mnist hydra.run.dir=out/
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from omegaconf import DictConfig, ListConfig, OmegaConf

from dse.cli import OPTIONS_HELP, dataset_names, exit_now, group_options, neuron_models, run_app
from dse.config.keys import override_key
from dse.errors import EXIT_NOT_LEGAL, EXIT_OK, ConfigError, OutputError
from dse.files import atomic_write_text, check_folder, claim_folder

if TYPE_CHECKING:
    from dse.hardware.spec import HardwareSpec
    from dse.ir.graph import Graph

HELP = """usage: python -m dse.compile [OVERRIDE ...]

Compile a trained network (ONNX) for a chip; write report.json (with its energy, latency and area where the
chip has a cost model), layers.csv, compiled.npz, config.yaml, samples.json (which samples calibrated and
which tested it) and, for a spiking chip, compiled.nir (a NIR graph) into the run folder (hydra.run.dir=DIR,
default results/compile/<model>_<chip>_<strategy>/<time>/).

Presets (dse/conf/):    {groups}
Your own presets:       hydra.searchpath=[file:///DIR] (DIR laid out like dse/conf/: DIR/hardware/my_chip.yaml)
A user model:           model.onnx=PATH (named after the file; model.name=NAME to choose)
Data (docs/data.md):    model.dataset={datasets}|DATA.npz|IMAGE_FOLDER|module:function
                        model.calib_samples=N model.test_samples=N
                        model.preprocess.resize=N .crop=N .channels=1|3 .scale=true|false .mean=[..] .std=[..]
Device (docs/device.md): hardware.device.programming_sigma=0.05 .stuck_low=0.005 .adc_noise_lsb=0.5 ...
                        evaluate.instances=20 evaluate.seed=0 (chips drawn and simulated)
                        hardware.device.fault_map=FAULTS.npz (one known chip; write one with
                        python -m dse.sim.device_noise COMPILED.npz OUT.npz [OVERRIDE ...])
Memory bound (GB):      compile.max_memory_gb=6   (default: half the machine's; a run that cannot fit is
                        refused before it starts)
Neuron models:          hardware.neuron.model={neurons}
{options}
Any field:              hardware.weights.bits=4 hardware.io.input_bits=4 hardware.io.output_bits=4
                        hardware.crossbar.rows=64 hardware.crossbar.cols=64 tuning.free_steps=300 ...
Cost (docs/cost.md):    hardware.cost.adc_8b_pj_per_conversion=0.16 (any coefficient of the preset's cost
                        block) hardware.mapping.cores_per_chip=16 hardware.mapping.mesh=[8,8]

ONNX ops imported: {ops}
  (in a network of one float data input whose axis 0 is the batch, and one output)
Exit status: 0 compiled and legal, 2 bad input (one line on stderr, nothing written), 3 compiled but not legal,
             4 the original's or the compiled network's outputs are NaN or Inf (one line), 1 a bug (a traceback)."""


def _help() -> str:
    from dse.frontends.onnx import OP_FORMS, SUPPORTED_OPS

    ops = ", ".join(f"{op} ({OP_FORMS[op]})" if op in OP_FORMS else op for op in SUPPORTED_OPS)
    return HELP.format(ops=ops, groups=group_options("model", "hardware", "strategy", "tuning"),
                       datasets=dataset_names(), neurons=neuron_models(), options=OPTIONS_HELP)


def main(cfg: DictConfig, run_dir: Path) -> int:
    from dse.compile import check_memory, compile, load_model_config, prepare
    from dse.compile.memory import ChipWork
    from dse.config import hardware_from, montecarlo_from, tuning_from
    from dse.config.effect import check_given, device_reason
    from dse.ir.serialize import save_graph

    hw = hardware_from(cfg.hardware)
    faults = None
    if hw.device.fault_map is not None:  # a map that cannot be read was found after the tuning
        from dse.sim.device_noise import load_fault_map

        faults = load_fault_map(hw.device.fault_map)  # read once: the compile is given it
    tuning = tuning_from(cfg.tuning)
    given = _given(cfg)
    check_given(given, lambda path: [OmegaConf.select(cfg, path)], "the chip has")
    job = OmegaConf.to_yaml(OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"]), resolve=True)
    chosen = _chosen(cfg)
    check_run_folder(run_dir, job, chosen=chosen)
    for path, value in [("tuning.noise_aware", tuning.noise_aware), *given]:  # noise-aware: a preset's too
        reason = device_reason(path, value, hw)
        if reason:
            raise ConfigError(f"{path}={str(value).lower()} changes nothing{reason}")
    m = cfg.model
    graph, data = load_model_config(m)
    bound = cfg.compile.max_memory_gb
    check_memory(graph, data, tuning=tuning, max_memory_gb=bound,
                 work=ChipWork.of(hw, cfg.strategy.reencode_k, cfg.strategy.readout_k, cfg.evaluate.instances))
    prepared = prepare(graph, data, name=m.name, approximator_width=cfg.strategy.approximator_width,
                       approximator_output=cfg.strategy.approximator_output, max_memory_gb=bound)
    result = compile(prepared, hw, strategy=cfg.strategy.name, tuning=tuning, reencode_k=cfg.strategy.reencode_k,
                     readout_k=cfg.strategy.readout_k, max_memory_gb=bound,
                     evaluate=montecarlo_from(cfg.evaluate), fault_map=faults,
                     progress=cfg.progress and
                     sys.stderr.isatty())

    existed = chosen and run_dir.is_dir()
    run_dir = make_run_folder(run_dir, chosen=chosen)
    with _held(run_dir):
        if chosen:  # again: a compile named into the same folder may have written its results there meanwhile
            check_run_folder(run_dir, job, chosen=chosen)
        before = set(os.listdir(run_dir))
        try:
            atomic_write_text(run_dir / "config.yaml", job)
            report = result.report.to_dict()
            save_graph(result.graph, run_dir / "compiled.npz", meta={"report": report})
            atomic_write_text(run_dir / "layers.csv", _csv(result.layers))
            atomic_write_text(run_dir / "samples.json", json.dumps(prepared.dataset.samples_record()))
            if hw.spiking:  # the network as a NIR graph, for other spiking simulators and toolchains
                _write_nir(result.graph, hw, run_dir / "compiled.nir")
            atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2, default=float))  # last: success
        except BaseException:  # a full disk, Ctrl-C: no half of a run folder left behind
            _remove_new(run_dir, before, folder=not existed)
            raise
    _summary(result, run_dir)
    return EXIT_OK if result.legal else EXIT_NOT_LEGAL


# what a compile writes into its run folder (config.yaml first, report.json last)
RESULT_FILES = ("config.yaml", "compiled.npz", "layers.csv", "samples.json", "compiled.nir", "report.json")


def check_run_folder(run_dir: Path, job: str, *, chosen: bool) -> None:
    """Before any work: the run folder can be written, and one the user named holds no other run's results. A
    sweep's folder, or one holding any of `RESULT_FILES` that came from another configuration (config.yaml
    differs, `progress` aside, or is missing: a compiled.npz put there from elsewhere), is refused: writing over
    it would lose what was computed there. The same
    configuration again writes over its own results. (The timestamped default is never written over:
    `make_run_folder`.)"""
    check_folder(run_dir)
    if not chosen:
        return
    from dse.explore.rundir import FINGERPRINT, STUDY_DB  # only for a named folder: no import on the default path

    sweep = [name for name in (STUDY_DB, FINGERPRINT) if (run_dir / name).exists()]
    if sweep:
        raise OutputError(f"run folder {run_dir} holds a sweep ({sweep[0]}); choose another hydra.run.dir")
    if not any((run_dir / name).exists() for name in RESULT_FILES):
        return

    def settings(text: str) -> dict:
        return {k: v for k, v in OmegaConf.to_container(OmegaConf.create(text)).items() if k != "progress"}

    try:
        theirs = settings((run_dir / "config.yaml").read_text())
    except Exception:  # noqa: BLE001 - missing, unreadable or not a mapping: not a config this compile wrote
        theirs = None
    if theirs != settings(job):
        raise OutputError(f"run folder {run_dir} holds the results of another compile (its config.yaml "
                          f"{'differs' if theirs is not None else 'is missing or unreadable'}); choose another "
                          "hydra.run.dir, or move those results away")


@contextmanager
def _held(run_dir: Path) -> Iterator[None]:
    """The run folder locked (flock on the folder itself: no file left behind) while this compile checks it again
    and writes its results: compiles named into one folder (a shell loop with ``&``) write one after the other, and
    the later one, of another configuration, finds the first's results there and is refused."""
    fd = os.open(run_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released when the descriptor closes
        yield
    finally:
        os.close(fd)


def _remove_new(run_dir: Path, before: set[str], *, folder: bool) -> None:
    """Take back what a compile whose writing failed wrote: the files that were not in `run_dir` before (those
    that were, the same configuration's, it has written over), and the folder itself where this compile made it."""
    for name in set(os.listdir(run_dir)) - before:
        (run_dir / name).unlink(missing_ok=True)
    if folder:
        with contextlib.suppress(OSError):  # not empty: another compile's files came in meanwhile
            run_dir.rmdir()


def _keys(overrides: ListConfig) -> list[str]:
    """The paths a list of Hydra overrides sets (``path=value``, ``+path=value``, ``++path=value``), read as
    written: an override is a string the config would resolve, and one a later override of the same path
    replaced may not resolve (``hydra.run.dir=${oc.env:UNSET} hydra.run.dir=out``: a traceback)."""
    return [override_key(o) for o in OmegaConf.to_container(overrides, resolve=False) if "=" in o]


def _given(cfg: DictConfig) -> list[tuple[str, object]]:
    """The fields the command line sets, with the values they compose to."""
    return [(p, OmegaConf.select(cfg, p)) for p in _keys(cfg.hydra.overrides.task) if "." in p]


def _chosen(cfg: DictConfig) -> bool:
    """Whether the user named the run folder (hydra.run.dir=...), rather than taking the timestamped default."""
    return "hydra.run.dir" in _keys(cfg.hydra.overrides.hydra)


def make_run_folder(run_dir: Path, *, chosen: bool) -> Path:
    """The folder the results go to: one the user named as it is (`check_run_folder` vetted it); the
    time-stamped default claimed (`claim_folder`), so that compiles started in the same second (a shell loop with
    ``&``) never write into one folder."""
    if not chosen:
        return claim_folder(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # gone wrong since `check_run_folder`
        raise OutputError(f"run folder {run_dir} cannot be made ({exc.strerror or exc})") from None
    return run_dir


def _csv(rows: list[dict]) -> str:
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["name"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _write_nir(graph: Graph, hw: HardwareSpec, path: Path) -> None:
    """Atomic (`dse.files`). A graph NIR cannot say (wiring it lacks) costs the file, not the compiled chip."""
    from dse.errors import UnsupportedOpError
    from dse.frontends.nir_export import write_nir

    try:
        write_nir(graph, hw, path)
    except UnsupportedOpError as e:
        logging.getLogger(__name__).warning("compiled.nir not written: %s", e)


def _summary(result, run_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    r = result.report
    m, res = r.metrics, r.resources
    table = Table(title=f"{r.model} on {r.hardware.name} ({r.strategy}, tuning={r.tuning})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    if m.accuracy_compiled is None:
        accuracy = [("accuracy", f"n/a ({m.accuracy_note})"),
                    ("relative logit error", f"{m.logits_rel_error:.4f}")]
    else:
        accuracy = [("accuracy, original", f"{m.accuracy_original:.4f}"),
                    ("accuracy, compiled", f"{m.accuracy_compiled:.4f}"),
                    ("delta (pp)", f"{m.accuracy_delta_pp:.2f}"),
                    ("delta, 95% interval (pp)", "{:.2f} to {:.2f}".format(*m.accuracy_delta_ci95))]
    rows = [
        *accuracy,
        ("top-1 agreement", f"{m.agreement:.4f}"),
        *([("approximated (MLP fit)", ", ".join(f"{k} x{v}" for k, v in r.approximated.items()))]
          if r.approximated else []),
        ("crossbars", str(res.crossbars)),
        ("cells used", str(res.cells_used)),
        ("utilization", f"{res.utilization:.3f}"),
        ("neurons / synapses", f"{res.neurons} / {res.synapses}"),
        *_device_rows(r.device),
        *_cost_rows(r.cost),
        ("legal", str(r.legal)),
        ("compile time (s)", f"{r.compile_seconds:.1f}"),
    ]
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for v in r.violations:
        console.print(f"[red]violation[/red] {v}")
    console.print(f"written to {run_dir}")


def _device_rows(device) -> list[tuple[str, str]]:
    """The drawn chips (hardware.device, evaluate.instances): the delta's spread over them."""
    if device is None:
        return []
    if device.accuracy_delta_pp_mean is None:
        return [(f"agreement, {device.instances} chips (mean)", f"{device.agreement_mean:.4f}")]
    return [(f"delta over {device.instances} chips (pp)",
             f"{device.accuracy_delta_pp_mean:.2f} +- {device.accuracy_delta_pp_std:.2f}"),
            ("accuracy, 5th percentile chip", f"{device.accuracy_p5:.4f}"),
            ("chips simulated in (s)", f"{device.seconds:.3g}")]


def _cost_rows(cost) -> list[tuple[str, str]]:
    """The cost totals per inference, in the unit that reads best (report.json holds pJ, ns, mm^2)."""
    if cost is None:
        return []
    energy = cost.energy_pj["total"]
    rows = [("energy / inference", _si(energy * 1e-12, "J")), ("latency", _si(cost.latency_ns * 1e-9, "s")),
            ("area (mm^2)", f"{cost.area_mm2['total']:.4g}"), ("inferences / s", f"{cost.inferences_per_s:,.0f}")]
    if cost.tops_per_w is not None:
        rows.append(("TOPS/W", f"{cost.tops_per_w:.3g}"))
    return rows


def _si(value: float, unit: str) -> str:
    """3 significant digits with an SI prefix: 2.79e-6 J -> '2.79 uJ'."""
    for factor, prefix in ((1.0, ""), (1e-3, "m"), (1e-6, "u"), (1e-9, "n"), (1e-12, "p")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value / 1e-15:.3g} f{unit}"


if __name__ == "__main__":
    exit_now(run_app("compile", main, help_text=_help))
