"""Throughput of the sweep on 1 and 2 workers (the default runner, forked worker processes, and Ray) and on a
two-node local Ray cluster, and the wall time of the default sweep split into its fixed costs and its trials;
JSON on stdout.

    python -m bench.sweep_scaling                 # every part (about 8 minutes on 2 idle cores)
    python -m bench.sweep_scaling --no-default    # the scaling parts only
    python -m bench.sweep_scaling --no-scaling --no-cluster   # the default sweep only

(from the repository root: as a module, so that this checkout, first on sys.path, is what Ray workers import)

Scaling: the same 8-trial sweep (lenet_mnist on chip_a, weight and I/O bits) runs on 1 worker, then on 2, on
each runner: `pool` (worker processes forked from the driver) and `ray` (a fresh local Ray instance of that
many CPUs). Throughput is trials per second from the first trial submitted to the last result (so it counts
the workers' start and their first fetch of the prepared network, not Ray's own start).
Cluster: the same sweep on two Ray nodes of 1 CPU each, started on this machine with `ray start` (a head and a
worker node) and joined through `runner.address`; its throughput against the 1-worker Ray run's.
Default sweep: `python -m dse.sweep hardware=chip_a strategy=split` as a user runs it (its default runner,
`pool`), timed from outside; its fixed costs (`fixed_seconds`: everything but the trials) are the process
start and imports (`process_seconds`: the wall time the sweep itself did not measure) and the sweep's own
`setup` (config, data, study), `start` (Ray's, 0 on the pool), `prepare`, `close` (Ray's shutdown, the
workers' end) and `outputs` (tables and figures), from the `sweep seconds` line it logs.
Other load on the machine slows every part: the JSON records the load average before and after.
"""

from __future__ import annotations

import argparse
import ast
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled"}
SCALING_SWEEP = ["hardware=chip_a", "strategy=split", "search=custom", "hardware.weights.bits=2,4,6,8",
                 "hardware.io.input_bits=4,8", "progress=false"]


def scaling(name: str, folder: Path, *, runner: str = "ray", workers: int | None = None,
            address: str | None = None) -> dict:
    from dse.config import compose_config, split_sweeps
    from dse.explore.pool_executor import PoolExecutor
    from dse.explore.ray_executor import RayExecutor
    from dse.explore.runner import run_study

    cmd = split_sweeps(SCALING_SWEEP)
    cfg = compose_config("sweep", cmd.overrides)
    executor = PoolExecutor(workers=workers) if runner == "pool" else RayExecutor(num_cpus=workers, address=address)
    start = time.perf_counter()
    result = run_study(cfg, folder / name, cli_sweeps=cmd.sweeps, pinned=cmd.pinned, executor=executor)
    trials = result.trials
    return {
        "runner": runner,
        "workers": workers or 2,
        "trials": len(trials),
        "failed": int((trials.state == "fail").sum()),
        "trials_seconds": round(result.stats.seconds, 2),
        "throughput_trials_per_s": round(len(trials) / result.stats.seconds, 4),
        "total_seconds": round(time.perf_counter() - start, 2),
        "timings": {k: round(v, 2) for k, v in result.timings.items()},
        "trial_cpu_seconds_mean": round(float(trials.cpu_seconds.mean()), 2),
        "accuracy_delta_pp": trials.sort_values("trial").accuracy_delta_pp.tolist(),
    }


def default_sweep(folder: Path) -> dict:
    run_dir = folder / "default"
    command = [sys.executable, "-m", "dse.sweep", "hardware=chip_a", "strategy=split", "progress=false",
               f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env={**ENV, "DSE_LOG": "INFO"})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the default sweep failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    trials = pd.read_csv(run_dir / "trials.csv")
    line = next(x for x in done.stderr.splitlines() if "sweep seconds: " in x)
    timings = ast.literal_eval(line.split("sweep seconds: ", 1)[1])
    process = wall - sum(timings.values())
    return {
        "command": "python -m dse.sweep hardware=chip_a strategy=split (runner=pool)",
        "wall_seconds": round(wall, 1),
        "trials": len(trials),
        "failed": int((trials.state == "fail").sum()),
        "trials_seconds": timings.get("trials"),
        "fixed_seconds": round(wall - timings.get("trials", 0.0), 1),
        "process_seconds": round(process, 1),
        "timings": timings,
        "trial_cpu_seconds_sum": round(float(trials.cpu_seconds.sum()), 1),
        "trial_wall_seconds_sum": round(float((trials.compile_seconds + trials.evaluate_seconds).sum()), 1),
    }


def two_node_cluster(folder: Path, one_worker: dict | None) -> dict:
    """The scaling sweep on a head and a worker node of 1 CPU each, both `ray start` processes here."""
    with local_cluster() as address:
        out = scaling("cluster", folder, address=address)
    out["address"] = address
    if one_worker:
        out["speedup_over_one_worker"] = round(out["throughput_trials_per_s"] / one_worker["throughput_trials_per_s"],
                                               3)
        out["same_results"] = out["accuracy_delta_pp"] == one_worker["accuracy_delta_pp"]
    return out


@contextmanager
def local_cluster(nodes: int = 2) -> Iterator[str]:
    """A local Ray cluster of `nodes` nodes of 1 CPU each (a head and workers, each a `ray start` process);
    yields its address and stops every node on exit."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    started = [_ray_node("--head", f"--port={port}", "--include-dashboard=false")]
    try:
        _wait_for_port(port, started[0])
        started += [_ray_node(f"--address={address}") for _ in range(nodes - 1)]
        _wait_for_nodes(address, nodes)
        yield address
    finally:
        for node in reversed(started):
            _stop(node)


def _ray_node(*args: str) -> subprocess.Popen:
    """`ray start --block` in a process group of its own: ending the group ends that node and nothing else
    (`ray stop` would stop every Ray instance on the machine)."""
    ray = Path(sys.executable).parent / "ray"
    return subprocess.Popen([str(ray), "start", "--block", "--num-cpus=1", "--disable-usage-stats", *args],
                            env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _stop(node: subprocess.Popen) -> None:
    try:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(node.pid, signal.SIGKILL)
        node.wait()
    except ProcessLookupError:
        pass


def _free_port() -> int:
    """A free port below Ray's worker port range (10002-19999)."""
    for port in range(6400, 9999):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def _wait_for_port(port: int, head: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or head.poll() is not None:
                raise RuntimeError("the Ray head node did not start") from None
            time.sleep(1)


def _wait_for_nodes(address: str, n: int, timeout_s: float = 120) -> None:
    probe = (f"import ray, time\nray.init(address={address!r}, logging_level='ERROR')\n"
             f"t = time.time()\nwhile len([x for x in ray.nodes() if x['Alive']]) < {n}:\n"
             f"    assert time.time() - t < {timeout_s}, ray.nodes()\n    time.sleep(1)\n")
    subprocess.run([sys.executable, "-c", probe], env=ENV, check=True, timeout=timeout_s + 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-default", action="store_true", help="skip the default sweep")
    parser.add_argument("--no-scaling", action="store_true", help="skip the 1- and 2-worker runs")
    parser.add_argument("--no-cluster", action="store_true", help="skip the two-node cluster run")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    logging.basicConfig(level=logging.WARNING)
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out: dict = {"cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="sweep_scaling_") as tmp:
        folder = Path(tmp)
        if not args.no_scaling:
            out["scaling"] = {"sweep": " ".join(SCALING_SWEEP)}
            for runner in ("pool", "ray"):
                one = scaling(f"{runner}_1", folder, runner=runner, workers=1)
                two = scaling(f"{runner}_2", folder, runner=runner, workers=2)
                out["scaling"][runner] = {
                    "one_worker": one,
                    "two_workers": two,
                    "speedup": round(two["throughput_trials_per_s"] / one["throughput_trials_per_s"], 3),
                    "same_results": one["accuracy_delta_pp"] == two["accuracy_delta_pp"],
                }
        if not args.no_cluster:  # against one Ray worker, where the scaling part ran
            out["two_node_cluster"] = two_node_cluster(folder, out.get("scaling", {}).get("ray", {}).get("one_worker"))
        if not args.no_default:
            out["default_sweep"] = default_sweep(folder)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
