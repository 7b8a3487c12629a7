"""Where a sweep works: resuming the newest run folder of the same configuration, refusing a foreign one."""

from __future__ import annotations

import os
import time

import pytest

from dse.errors import ConfigError, OutputError
from dse.explore.rundir import (
    StudyLock,
    check_study_file,
    check_writable,
    locate,
    read_fingerprint,
    write_fingerprint,
)

A = {"hardware": {"weights": {"bits": 8}}, "study": {"name": "s"}}
B = {"hardware": {"weights": {"bits": 4}}, "study": {"name": "s"}}


def make_run(folder, fingerprint, age_s: float = 0.0):
    folder.mkdir(parents=True)
    write_fingerprint(folder, fingerprint, "s")
    if age_s:
        t = time.time() - age_s
        os.utime(folder / "study.json", (t, t))
    return folder


def test_explicit_folder_is_used_as_it_is(tmp_path):
    assert locate(tmp_path / "new", timestamped=False, fingerprint=A, resume=True) == tmp_path / "new"
    run = make_run(tmp_path / "run", A)
    assert locate(run, timestamped=False, fingerprint=A, resume=True) == run


def test_explicit_folder_of_another_study_is_refused(tmp_path):
    run = make_run(tmp_path / "run", A)
    with pytest.raises(ConfigError, match=r"another configuration \(hardware.weights.bits: 8 there, 4 now\)"):
        locate(run, timestamped=False, fingerprint=B, resume=True)
    assert read_fingerprint(run) == A


@pytest.mark.parametrize("study_json", [None, "{garbage"])
@pytest.mark.parametrize("held", ["study.db", "trials.csv", "config.yaml"])
def test_explicit_folder_of_results_without_a_readable_fingerprint_is_refused(tmp_path, held, study_json):
    """Without study.json the folder's study could not be told apart: its study.db was resumed (another search
    space's trials reported as this sweep's, exit 0), its tables and config.yaml written over."""
    run = tmp_path / "run"
    run.mkdir()
    (run / held).write_text("theirs")
    if study_json is not None:
        (run / "study.json").write_text(study_json)
    with pytest.raises(ConfigError, match=rf"run holds {held} but no readable study\.json \(the configuration of "
                                          r"the study there\), so it may be another study's"):
        locate(run, timestamped=False, fingerprint=A, resume=True)
    assert (run / held).read_text() == "theirs"


def test_time_stamped_default_resumes_the_newest_run_of_the_same_configuration(tmp_path):
    old_a = make_run(tmp_path / "s" / "2026-01-01_00-00-00", A, age_s=100)
    newer_a = make_run(tmp_path / "s" / "2026-01-02_00-00-00", A, age_s=50)
    make_run(tmp_path / "s" / "2026-01-03_00-00-00", B, age_s=10)
    fresh = tmp_path / "s" / "2026-01-04_00-00-00"
    assert locate(fresh, timestamped=True, fingerprint=A, resume=True) == newer_a != old_a
    assert locate(fresh, timestamped=True, fingerprint={"other": 1}, resume=True) == fresh
    assert locate(fresh, timestamped=True, fingerprint=A, resume=False) == fresh


def test_a_second_sweep_cannot_take_a_locked_folder(tmp_path):
    with StudyLock(tmp_path):
        with pytest.raises(ConfigError, match=f"in use by another sweep \\(pid {os.getpid()}\\)"):
            with StudyLock(tmp_path):
                pass
    with StudyLock(tmp_path):  # released
        pass


def optuna_db(path, name="s"):
    import optuna

    optuna.create_study(study_name=name, storage=f"sqlite:///{path}")
    return path


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def foreign(path):
    path.unlink()
    optuna_db(path, name="another")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda p: p.write_bytes(b""), "is empty \\(0 bytes\\), not a study"),
        (lambda p: p.write_bytes(b"garbage " * 512), "is not an SQLite database"),
        (truncate, "is damaged"),
        (foreign, "holds no study named 's'"),
    ],
    ids=["empty", "garbage", "truncated", "foreign"],
)
def test_a_damaged_or_empty_study_file_is_refused_and_left_untouched(tmp_path, damage, message):
    db = optuna_db(tmp_path / "study.db")
    damage(db)
    before = db.read_bytes()
    with pytest.raises(ConfigError, match=message) as info:
        check_study_file(db, "s")
    assert len(str(info.value).splitlines()) == 1
    assert db.read_bytes() == before


def test_a_sound_study_file_passes_and_none_is_a_new_study(tmp_path):
    check_study_file(tmp_path / "study.db", "s")
    check_study_file(optuna_db(tmp_path / "study.db"), "s")


def test_a_full_disk_is_found_before_any_trial(tmp_path):
    check_writable(tmp_path / "run")
    with pytest.raises(OutputError, match=r"run folder .*run: its disk has \d+ MB free, a sweep needs at least"):
        check_writable(tmp_path / "run", min_free_bytes=2**62)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_folder_is_found_before_any_trial(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    run.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="is not writable .Permission denied"):
            check_writable(run)
    finally:
        run.chmod(0o755)


def test_sweeps_started_in_the_same_second_get_a_folder_each(tmp_path):
    """Their time-stamped default folder is the same: the second was refused ("in use by another sweep") while the
    first ran. Each claims its own now (`<time>_2`), and running the first again resumes its folder."""
    from dse.config import compose_config, split_sweeps
    from dse.explore.executors import LocalExecutor
    from dse.explore.runner import run_study

    def sweep(bits: str):
        cmd = split_sweeps(["model=mlp_digits", "progress=false", "tuning=none", "search=custom",
                            f"hardware.weights.bits={bits}"])
        return run_study(compose_config("sweep", cmd.overrides), tmp_path / "2026-12-01_10-00-00", timestamped=True,
                         cli_sweeps=cmd.sweeps, pinned=cmd.pinned, executor=LocalExecutor())

    first, second = sweep("2,4"), sweep("6,8")
    assert (first.run_dir.name, second.run_dir.name) == ("2026-12-01_10-00-00", "2026-12-01_10-00-00_2")
    assert sorted(second.trials["hardware.weights.bits"]) == [6, 8]
    again = sweep("2,4")
    assert again.run_dir == first.run_dir and again.stats.kept == 2


def test_a_compiles_folder_is_refused(tmp_path):
    """A sweep named into it wrote its own config.yaml and samples.json over the compile's."""
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.json").write_text("{}")
    with pytest.raises(ConfigError, match=r"run holds a compile \(report\.json\), whose config\.yaml"):
        locate(tmp_path / "run", timestamped=False, fingerprint=A, resume=True)


def test_a_model_or_data_file_changed_in_place_starts_a_new_study(tmp_path):
    """The fingerprint named the files, not what they held: the same command after retraining my_net.onnx (or
    rewriting my_data.npz) resumed the old study, its trials of the old network reported as the new one's."""
    import shutil

    import numpy as np
    import onnx
    from onnx import numpy_helper

    from dse.config import compose_config, split_sweeps
    from dse.data import load_dataset, model_path
    from dse.explore.executors import LocalExecutor
    from dse.explore.runner import run_study

    net, data = tmp_path / "my_net.onnx", tmp_path / "my_data.npz"
    shutil.copy(model_path("mlp_digits"), net)
    digits = load_dataset("digits")
    np.savez(data, x=np.asarray(digits.x_test), y=digits.y_test)

    def sweep():
        cmd = split_sweeps([f"model.onnx={net}", f"model.dataset={data}", "progress=false", "tuning=none",
                            "search=custom", "hardware.weights.bits=4,8"])
        return run_study(compose_config("sweep", cmd.overrides), tmp_path / "runs" / "2026-12-01_10-00-00",
                         timestamped=True, cli_sweeps=cmd.sweeps, pinned=cmd.pinned, executor=LocalExecutor())

    first = sweep()
    assert sweep().run_dir == first.run_dir  # unchanged: resumed
    proto = onnx.load(str(net))
    w = proto.graph.initializer[0]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 0.5, w.name))  # "retrained"
    onnx.save(proto, str(net))
    retrained = sweep()
    assert retrained.run_dir != first.run_dir and retrained.stats.kept == 0
    np.savez(data, x=np.asarray(digits.x_test)[::-1], y=digits.y_test[::-1])
    assert sweep().run_dir not in (first.run_dir, retrained.run_dir)


def test_a_study_stored_before_the_inputs_digest_resumes(tmp_path):
    old = make_run(tmp_path / "s" / "2026-01-01_00-00-00", A)
    digest = {"network": "ab", "data": "cd"}
    assert locate(tmp_path / "s" / "new", timestamped=True, fingerprint={**A, "inputs": digest}, resume=True) == old
    assert locate(old, timestamped=False, fingerprint={**A, "inputs": digest}, resume=True) == old


MAPPED = {**A, "inputs": {"network": "ab", "data": "cd", "fault_maps": {"f.npz": "01"}}}
REDRAWN = {**A, "inputs": {"network": "ab", "data": "cd", "fault_maps": {"f.npz": "02"}}}


def test_a_fault_map_rewritten_in_place_is_another_study(tmp_path, caplog):
    """The fingerprint named the map's file, not its cells: the same command after drawing another chip into
    faults.npz resumed the old study, its trials of the old chip reported as the new one's."""
    old = make_run(tmp_path / "s" / "2026-01-01_00-00-00", MAPPED)
    assert locate(tmp_path / "s" / "new", timestamped=True, fingerprint=MAPPED, resume=True) == old
    assert locate(old, timestamped=False, fingerprint=MAPPED, resume=True) == old
    assert locate(tmp_path / "s" / "new", timestamped=True, fingerprint=REDRAWN, resume=True) == tmp_path / "s" / "new"
    assert "fault map f.npz changed since the study in" in caplog.text
    with pytest.raises(ConfigError, match=r"^fault map f\.npz changed since the study in .*2026-01-01_00-00-00 started "
                                          r"\(.*\); choose another hydra\.run\.dir to start a new study"):
        locate(old, timestamped=False, fingerprint=REDRAWN, resume=True)
    assert read_fingerprint(old) == MAPPED  # the old study is left as it was


def test_a_study_stored_before_the_fault_maps_digest_resumes(tmp_path):
    old = make_run(tmp_path / "s" / "2026-01-01_00-00-00", {**A, "inputs": {"network": "ab", "data": "cd"}})
    assert locate(tmp_path / "s" / "new", timestamped=True, fingerprint=MAPPED, resume=True) == old
    assert locate(old, timestamped=False, fingerprint=REDRAWN, resume=True) == old


@pytest.mark.slow  # about 5 s: the sweep's modules and the model (the rule itself: the two tests above)
def test_the_fingerprint_holds_each_fault_maps_content(tmp_path):
    import numpy as np

    from dse.config import compose_config, split_sweeps
    from dse.explore.runner import _load, study_fingerprint, study_options
    from dse.explore.space import build_space

    path = tmp_path / "faults.npz"
    base = ["model=mlp_digits", "tuning=none", "search=custom", "hardware.weights.bits=4,8"]
    graph, data = _load(compose_config("sweep", split_sweeps(base).overrides))

    def fingerprint(cells: int, *fault_map: str):
        np.savez(path, core=np.full((1, 2, 3, 4), cells, np.int8))
        cmd = split_sweeps([*base, *fault_map])
        cfg = compose_config("sweep", cmd.overrides)
        return study_fingerprint(cfg, build_space(cfg, cmd.sweeps, cmd.pinned), study_options(cfg, True), graph, data)

    plain = fingerprint(0)
    assert "fault_maps" not in plain["inputs"]  # without a map: the fingerprint a study has stored until now
    mapped = f"hardware.device.fault_map={path}"
    first, again = fingerprint(0, mapped), fingerprint(0, mapped)
    assert first == again and list(first["inputs"]["fault_maps"]) == [str(path)]
    redrawn = fingerprint(1, mapped)
    assert redrawn["inputs"]["fault_maps"][str(path)] != first["inputs"]["fault_maps"][str(path)]
