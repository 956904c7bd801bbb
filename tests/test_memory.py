"""Training memory is estimated before training, and a training that cannot fit is refused in one
line with the estimate and what to change."""
import pytest

from spikeviz.training import memory
from spikeviz.cli import main
from spikeviz.errors import SpikevizError
from spikeviz.training.memory import check_fits, estimate_training

GB = 1e9
BINS = 400_079   # the bundled in vitro sessions at 1 ms


def test_paper_attention_is_quadratic_in_the_context():
    short, long = (estimate_training("paper", 128, BINS, 2, c) for c in (1000, 2000))
    assert long.attention == 4 * short.attention
    # 16 heads x 2 windows x 15,625^2 scores: far past a 24-GB machine (it was OOM-killed).
    assert estimate_training("paper", 128, BINS).total > 24 * GB


def test_fast_and_transfer_fit_a_small_machine():
    for preset in ("fast", "transfer"):
        assert estimate_training(preset, 128, BINS).total < 2 * GB
    # The hour-long in vivo session: its traces dominate, still well under 24 GB.
    assert estimate_training("fast", 128, 3_541_244).total < 8 * GB


def test_refusal_suggests_a_batch_that_fits():
    big = estimate_training("fast", 128, BINS, batch_size=4096)
    available = estimate_training("fast", 128, BINS, batch_size=1000).total
    with pytest.raises(SpikevizError, match=r"--batch-size (\d+)") as info:
        check_fits(big, available, 128, BINS)
    batch = int(info.value.problem.split("--batch-size ")[1])
    assert estimate_training("fast", 128, BINS, batch).total * memory.MARGIN <= available
    assert estimate_training("fast", 128, BINS, batch + 1).total * memory.MARGIN > available
    check_fits(big, int(big.total * memory.MARGIN) + 1, 128, BINS)   # enough: no refusal


def test_train_refuses_the_paper_preset_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_bytes", lambda: int(20 * GB))
    out = tmp_path / "paper.safetensors"
    assert main(["train", "--session", "invitro_210511001_bh", "--loss", "focal", "--preset",
                 "paper", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "GB" in err[0] and "20.0 GB are available" in err[0]
    assert "--preset fast" in err[0] and "context 15,625" in err[0]
    assert not list(tmp_path.iterdir())
