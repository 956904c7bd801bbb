"""DistributedDataParallel training under torchrun: two CPU processes (gloo) take the same steps as
one process, so they end with the same weights."""
import shutil
import subprocess
import sys
from pathlib import Path

from spikeviz.models.checkpoint import read_tensors
from spikeviz.training.loop import state_path

# 25.184 s: a training split of 12592 bins holds 48 windows of 257 bins at any phase, so every
# batch of 4 splits 2 + 2 across the ranks and both runs take the same 12 steps.
ARGS = ["train", "--session", "invitro_210511001_bh", "--seconds", "25.184", "--loss", "focal",
        "--preset", "fast", "--epochs", "1", "--seed", "3", "--batch-size", "4", "--quiet"]


def test_two_process_ddp_takes_the_same_steps_as_one_process(tmp_path):
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
    assert read_tensors(state_path(single))[1]["step"] == read_tensors(state_path(double))[1]["step"]
    # Each rank trained on half of every batch and DDP averaged the gradients: the same steps, up
    # to float summation order (measured: 3e-7 at most). Ranks that do not average gradients
    # follow half the data each and end 1e-2 apart.
    assert one.keys() == two.keys()
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-5
    assert float(one["own"].abs().max()) > 1e-3   # starts at zero: training moved the weights
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "one.safetensors", "one.state.safetensors", "two.safetensors", "two.state.safetensors"]
