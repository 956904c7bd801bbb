"""A training killed with SIGKILL mid-epoch resumes with --resume, loses at most the epoch it was in,
and ends where an uninterrupted run ends; the checkpoint on disk is loadable at every moment."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from spikeviz import SpikevizError
from spikeviz.models.checkpoint import load_model, read_header
from spikeviz.training.loop import state_path

EPOCHS = 3


def command(out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "spikeviz", "train", "--session", "invitro_210511001_bh",
            "--seconds", "40", "--preset", "fast", "--loss", "focal", "--epochs", str(EPOCHS),
            "--patience", str(EPOCHS), "--threads", "1", "--quiet", "--out", str(out), *extra]


def epochs_on_disk(out: Path) -> int | None:
    """The checkpoint's epoch counter; it must load whenever it exists."""
    if not out.exists():
        return None
    try:
        return load_model(out).meta["epochs"]
    except SpikevizError as exc:   # torn or partial: exactly what atomic writes rule out
        pytest.fail(f"the checkpoint on disk was not loadable: {exc}")


def state_epoch(out: Path) -> int | None:
    """The epoch counter of the resume state beside `out`; it must parse whenever it exists."""
    path = state_path(out)
    if not path.exists():
        return None
    try:
        return json.loads(read_header(path)["__metadata__"]["spikeviz"])["epoch"]
    except SpikevizError as exc:
        pytest.fail(f"the training state on disk was not readable: {exc}")


def test_sigkill_mid_epoch_then_resume(tmp_path):
    whole, killed = tmp_path / "whole.safetensors", tmp_path / "killed.safetensors"
    reference = subprocess.Popen(command(whole), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
    victim = subprocess.Popen(command(killed), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    seen: list[int] = []
    deadline = time.time() + 300
    try:
        # Epoch 1's checkpoint and resume state written: the process is in epoch 2. Kill it there.
        while (epochs_on_disk(killed) or 0) < 1 or (n := state_epoch(killed) or 0) < 1:
            assert victim.poll() is None, victim.communicate()[0]
            assert time.time() < deadline, "no epoch finished in time"
            time.sleep(0.1)   # (each poll loads the checkpoint: more often took a core from the trainings)
        seen.append(n)
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
    assert victim.returncode == -signal.SIGKILL
    at_kill = epochs_on_disk(killed)
    assert at_kill is not None and 1 <= at_kill < EPOCHS, at_kill
    assert state_path(killed).exists()

    resumed = subprocess.run(command(killed, "--resume"), capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert reference.wait(timeout=300) == 0, reference.communicate()[0][-3000:]

    a, b = load_model(whole), load_model(killed)
    assert a.meta["epochs"] == b.meta["epochs"] == EPOCHS
    assert [h["epoch"] for h in b.meta["history"]] == list(range(1, EPOCHS + 1))
    assert b.meta["best_epoch"] == a.meta["best_epoch"]
    # Exact resume: optimizer and RNG states come back, so the weights match the uninterrupted run.
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=1e-5, atol=1e-6)
    assert [round(h["pr_auc"], 5) for h in b.meta["history"]] == \
        [round(h["pr_auc"], 5) for h in a.meta["history"]]


def test_killed_between_state_and_checkpoint_of_epoch_1(tmp_path):
    out = tmp_path / "m.safetensors"
    # The last --epochs wins: a one-epoch run.
    assert subprocess.run(command(out, "--epochs", "1"), capture_output=True,
                          timeout=300).returncode == 0
    out.unlink()   # what SIGKILL between the state's and the checkpoint's os.replace leaves
    resumed = subprocess.run(command(out, "--resume"), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_model(out).meta["epochs"] == EPOCHS
