"""The Dask grid: local cluster, a real scheduler/worker pair, and reuse of finished cells."""
import json
import socket
import subprocess
import sys
import time

import pytest

from spikeviz.errors import SpikevizError
from spikeviz.models.baselines import ALL_BASELINES
from spikeviz.cli import main
from spikeviz.evaluation.grid import GridSpec, run_grid

# The quick baselines: the cells are about the grid (tasks, cache), not about the GLMs' fits.
SPEC = dict(sessions=("invitro_210511001_bh", "invitro_210511001_lh"), losses=("focal",),
            epochs=1, seconds=40.0, eval_seconds=5.0, baselines=("rate", "ewma"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_local_grid_caches_cells_and_recomputes_corrupt_ones(tmp_path):
    first = run_grid(GridSpec(**SPEC), tmp_path, workers=1)
    assert len(first["cells"]) == 4 and first["cached"] == 0
    pairs = {(c["train_session"], c["test_session"]) for c in first["cells"]}
    assert len(pairs) == 4
    for cell in first["cells"]:
        assert 0.5 < cell["model"]["roc_auc"] <= 1
        assert set(cell["baselines"]) == set(SPEC["baselines"])
        assert cell["direction"] == "vitro->vitro"
    # Rerun with one evaluation entry tampered (valid JSON, one score changed): the other three
    # cells and both trainings come from the cache; the tampered entry fails its checksum and is
    # recomputed, never used, and the recomputed entry replaces it.
    entry = sorted((tmp_path / "cache").rglob("result.json"))[0]
    tampered = json.loads(entry.read_text())
    tampered["model"]["roc_auc"] = 0.0
    entry.write_text(json.dumps(tampered))
    second = run_grid(GridSpec(**SPEC), tmp_path, workers=1)
    assert second["cached"] == 3
    assert [c["model"] for c in second["cells"]] == [c["model"] for c in first["cells"]]
    assert json.loads(entry.read_text())["model"]["roc_auc"] > 0.5
    assert json.loads((tmp_path / "grid.json").read_text())["cached"] == 3


def test_grid_on_a_real_scheduler_and_worker(tmp_path, capsys):
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                  "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                               "--nworkers", "1", "--nthreads", "1", "--no-dashboard", "--no-nanny",
                               "--host", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the scheduler did not start"
                time.sleep(0.5)
        argv = ["grid", "--sessions", "invitro_210511001_bh", "--losses", "focal", "--epochs", "1",
                "--seconds", "40", "--eval-seconds", "5", "--baselines", "ewma", "--scheduler", address,
                "--out", str(tmp_path), "--json"]
        assert main(argv) == 0
        result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert result["scheduler"] == address and result["cached"] == 0
        [cell] = result["cells"]
        assert cell["train_session"] == cell["test_session"] == "invitro_210511001_bh"
        assert cell["model"]["pr_auc"] > cell["base_rate"]
        assert main(argv) == 0
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cached"] == 1
    finally:
        # The worker first, while its scheduler still answers its goodbye; a process that does not
        # leave in time is killed, as teardown is not what this test is about.
        for process in (worker, scheduler):
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def test_the_grid_scores_all_baselines_unless_told_and_refuses_unknown_ones():
    assert GridSpec(sessions=("invitro_210511001_bh",)).baselines == ALL_BASELINES
    with pytest.raises(SpikevizError, match=r"unknown baselines \['glm-couple'\]"):
        GridSpec(sessions=("invitro_210511001_bh",), baselines=("glm-couple",))


def test_bad_scheduler_address_is_one_clear_error(capsys, tmp_path):
    assert main(["grid", "--scheduler", "nowhere:1", "--out", str(tmp_path)]) == 2
    assert "--scheduler must be 'local' or an address" in capsys.readouterr().err


def test_a_local_cluster_keeps_off_dasks_default_port():
    """The local cluster's scheduler serves its HTTP endpoints on a free port, no dashboard: on
    Dask's 8787, a second grid at once (or a test beside one) warned of a busy port."""
    from spikeviz.training.workers import dask_client

    with dask_client("local", 1) as client:
        scheduler = client.cluster.scheduler
        assert scheduler.http_server.port != 8787


def test_a_cell_is_printed_beside_the_best_baseline_the_grid_ran():
    """Without ewma among --baselines a cell printed "EWMA nan": it names the best baseline run."""
    from spikeviz.cli.grid import cell_line

    cell = {"train_session": "a", "test_session": "b", "loss": "focal",
            "model": {"pr_auc": 0.2, "roc_auc": 0.9}, "comparison": {"best_baseline": "glm-coupled"},
            "baselines": {"rate": {"pr_auc": 0.1}, "glm-coupled": {"pr_auc": 0.25}}}
    assert cell_line(cell) == "  a -> b [focal]: PR-AUC 0.2000 (glm-coupled 0.2500), ROC-AUC 0.9000"
    assert "nan" not in cell_line(cell | {"comparison": {"best_baseline": None}, "baselines": {}})
