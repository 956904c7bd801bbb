"""DistributedDataParallel training under torchrun: two CPU processes (gloo) match one process."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import spikeviz
from spikeviz.checkpoint import read_tensors

ARGS = ["train", "--session", "invitro_210511001_bh", "--seconds", "24", "--loss", "focal",
        "--preset", "fast", "--epochs", "1", "--seed", "3", "--batch-size", "4", "--quiet"]


def test_two_process_ddp_matches_one_process(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        torchrun = shutil.which("torchrun")
    assert torchrun, "torchrun comes with torch"
    single, double = tmp_path / "one.safetensors", tmp_path / "two.safetensors"
    subprocess.run([sys.executable, "-m", "spikeviz", *ARGS, "--out", str(single)], check=True,
                   capture_output=True)
    proc = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node=2", "-m", "spikeviz",
                           *ARGS, "--out", str(double)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    one, meta_one = read_tensors(single)
    two, meta_two = read_tensors(double)
    assert meta_two["processes"] == 2 and meta_one["processes"] == 1
    assert meta_two["epochs"] == 1
    # Each rank trained on half of every batch and DDP averaged the gradients: the same steps,
    # up to float summation order (which Adam amplifies for near-zero gradients), so the two
    # models predict alike while both moved far from where they started.
    X = spikeviz.bin_spikes(spikeviz.load_session("invitro_210511001_bh"), stop_s=30.0).X
    p_one = spikeviz.predict_next(spikeviz.load_model(single), X)
    p_two = spikeviz.predict_next(spikeviz.load_model(double), X)
    assert np.corrcoef(p_one.ravel(), p_two.ravel())[0, 1] > 0.99
    assert abs(meta_two["valid"]["pr_auc"] - meta_one["valid"]["pr_auc"]) < 0.01
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "one.safetensors", "one.state.safetensors", "two.safetensors", "two.state.safetensors"]
