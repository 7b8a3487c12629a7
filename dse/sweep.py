"""`python -m dse.sweep`: the design-space-exploration suite (DESIGN.md section 5).

    python -m dse.sweep hardware=chip_a strategy=split
    python -m dse.sweep study=pareto study.n_trials=40
    python -m dse.sweep search=custom hardware.weights.bits=2,4,8 strategy.name=split,prune runner=local
    python -m dse.sweep experiment=split_vs_prune
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from dse.cli import OPTIONS_HELP, dataset_names, exit_now, group_options, neuron_models, run_app, schema_fields
from dse.errors import EXIT_NOT_LEGAL, EXIT_OK

HELP = """usage: python -m dse.sweep [OVERRIDE ...]

Sweep chip parameters and strategies around a hardware preset: compile the network for every point, write
the error-versus-resource trade-off as tables and figures into the run folder
(default results/<study.name>/<time>/; hydra.run.dir=DIR to choose it).

Presets (dse/conf/):    {groups}
                        (search: default the hardware preset's own space; custom = empty, fill it below)
Your own presets:       hydra.searchpath=[file:///DIR] (DIR laid out like dse/conf/: DIR/hardware/my_chip.yaml)
A user model and data:  model.onnx=PATH (named after the file)
                        model.dataset={datasets}|DATA.npz|IMAGE_FOLDER|module:function
                        model.calib_samples=N model.test_samples=N model.preprocess.*
                        (docs/data.md; without test labels the default error objective is logits_rel_error)
Search parameters:      a dotted config path; the same string is the override and the results column.
                        path=a,b,c or path=range(start,stop,step) sweeps it (adds it to the space);
                        path=value pins it (takes it out of the space). Searchable: hardware.*, strategy.*,
                        tuning.*, e.g. hardware.weights.bits=2,4,8 strategy.name=split,prune
Study:                  {study}
                        (the same study.name resumes the newest run folder of the same configuration;
                        study.resume=false starts a new one; study.objectives=[accuracy_delta_pp,crossbars])
Runner:                 {runner}
                        (runner=pool, the default: worker processes forked on this machine, one per CPU
                        or runner.max_concurrent (at most one per CPU); runner=ray: a local Ray instance
                        sized to the machine, or runner=ray runner.address=HOST:PORT; runner=local: one
                        trial after the other in this process)
Memory bound (GB):      compile.max_memory_gb=N per trial (default: half the machine's, shared by
                        runner=pool's workers; docs/scale.md)
Neuron models:          hardware.neuron.model={neurons}
{options}

Writes: config.yaml, samples.json, study.db (Optuna, SQLite), study.json (what resuming compares),
        trials.parquet, trials.csv, pareto.csv, pareto.tex, pareto_front.{{png,pdf}} (pareto_front_<resource>
        for several resource objectives), <figure>.{{png,pdf,csv}} (default sensitivity_<parameter>); with
        study.repeats=N, configurations.csv (per configuration: mean, std, min, max over the N seeds), and
        the Pareto set and figure per configuration.
        All result files are written atomically with mode 0644 (under umask 022). Ctrl-C writes the tables
        and figures of the trials that finished; the same command resumes (infrastructure failures, such as
        a Ray worker that died, run again; a trial's own failure stays).
Exit status: 0 done, 1 a bug (traceback), 2 bad input or an unusable run folder or study.db (one line on
        stderr, nothing changed), 3 no trial compiled to a legal network, 130 interrupted (Ctrl-C)."""


class SweepCommand:
    """Holds what the command line swept between the preprocessing and main()."""

    def __init__(self) -> None:
        self.sweeps: dict[str, list] = {}
        self.pinned: list[str] = []

    def preprocess(self, argv: list[str]) -> list[str]:
        from dse.config import split_sweeps

        cmd = split_sweeps(argv)
        self.sweeps, self.pinned = cmd.sweeps, cmd.pinned
        return cmd.overrides

    def job_config(self, cfg: DictConfig) -> str:
        """``--cfg job``: the config with the search space the sweep would run (command-line sweeps and
        study.repeats' seeds included), as its run folder's config.yaml will hold it."""
        from dse.explore.runner import job_config
        from dse.explore.space import build_space

        return job_config(cfg, build_space(cfg, self.sweeps, self.pinned))

    def main(self, cfg: DictConfig, run_dir: Path) -> int:
        import optuna

        from dse.explore.runner import run_study

        # Optuna's records go through our logging (warnings only), not its own handler
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
        pattern = OmegaConf.to_container(cfg.hydra.run, resolve=False)["dir"]
        result = run_study(cfg, run_dir, timestamped="${now:" in Path(str(pattern)).name, cli_sweeps=self.sweeps,
                           pinned=self.pinned, progress=bool(cfg.progress))
        _summary(result)
        usable = result.trials[(result.trials["state"] == "complete") & result.trials["legal"]]
        return EXIT_OK if len(usable) else EXIT_NOT_LEGAL


def _summary(result) -> None:
    from rich.console import Console
    from rich.table import Table

    from dse.explore.labels import scaled
    from dse.explore.space import REPEAT

    t, s = result.trials, result.stats
    console = Console(stderr=False)
    front = result.pareto
    params = [p for p in result.params if p != REPEAT][:6]
    if len(params) < len(result.params):  # study.repeats: the front's rows are configurations, seeds averaged
        configurations = t[[p for p in result.params if p != REPEAT]].drop_duplicates()
        title = (f"Pareto set ({len(front)} of {len(configurations)} configurations, each the mean over "
                 f"{t[REPEAT].nunique()} tuning seeds)")
    else:
        title = f"Pareto set ({len(front)} of {len(t)} trials)"
    table = Table(title=title)
    cols = [*params, *result.objectives]
    shown = front.head(15)
    # a physical column in the unit its values read best in (energy in µJ, not 9.6e7 pJ)
    units = {c: scaled(c, [float(v) for v in shown[c] if isinstance(v, int | float)]) for c in cols}
    for c in cols:
        table.add_column(units[c][1], justify="right")
    for _, row in shown.iterrows():
        table.add_row(*[_fmt(row[c] / units[c][0] if units[c][0] != 1.0 else row[c]) for c in cols])
    console.print(table)
    failed = int((t["state"] == "fail").sum())
    console.print(
        f"{len(t)} trials: {len(t) - failed} compiled ({int(t['legal'].sum())} legal), {failed} failed; "
        f"{s.ran} run now, {s.kept} kept from before, {s.resumed} interrupted ones run again; "
        f"{result.seconds:.0f} s"
    )
    if s.retry:
        console.print(f"{s.retry} failed for an infrastructure reason (a Ray worker or node died, or the trial ran "
                      "past runner.trial_timeout_s): run the same command again to run them again")
    for reason in t.loc[t["state"] == "fail", "error_message"].value_counts().head(3).index:
        console.print(f"[red]failed[/red] {reason}")
    console.print(f"written to {result.run_dir}")


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.2f}" if not v.is_integer() else str(int(v))
    return str(v)


def cli(argv: list[str] | None = None) -> int:
    def help_text() -> str:  # made only for --help
        from dse.config.schemas import RunnerConfig, StudyConfig

        return HELP.format(groups=group_options("model", "hardware", "strategy", "tuning", "search", "study",
                                                "runner", "experiment"),
                           datasets=dataset_names(), study=schema_fields("study", StudyConfig),
                           runner=schema_fields("runner", RunnerConfig), neurons=neuron_models(),
                           options=OPTIONS_HELP)

    command = SweepCommand()
    return run_app("sweep", command.main, argv=argv, help_text=help_text, preprocess=command.preprocess,
                   job_config=command.job_config)


if __name__ == "__main__":
    exit_now(cli())  # Ray is shut down and every file written by then
