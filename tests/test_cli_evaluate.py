"""`spikeviz evaluate` and `spikeviz table` from the command line, on bundled and merged recordings."""
import json
from pathlib import Path

import numpy as np
import pytest

from spikeviz.models.baselines import ALL_BASELINES

import spikeviz
from spikeviz.cli import main
from spikeviz.data.io.table import write_table
from spikeviz.data.recording import from_unit_times
from spikeviz.generation.copula import FACTORS

from .test_evaluation import VITRO, VITRO2, make_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return str(make_checkpoint(tmp_path_factory.mktemp("m") / f"{VITRO}-dice.safetensors", loss="dice"))


@pytest.fixture(scope="module")
def merged(tmp_path_factory):
    """253 real units (256 less 3 silent ones): both in vitro sessions in one recording, as a table."""
    a, b = spikeviz.load_session(VITRO), spikeviz.load_session(VITRO2)
    units, times = [], []
    for prefix, rec in (("bh", a), ("lh", b)):
        for uid, t in zip(rec.unit_ids, rec.spike_times):
            units.append(np.full(t.size, f"{prefix}{uid}"))
            times.append(t)
    rec = from_unit_times("merged", np.concatenate(units), np.concatenate(times),
                          max(a.duration_s, b.duration_s), {"format": "table"})
    assert rec.n_units == 253
    path = tmp_path_factory.mktemp("data") / "merged.npz"
    write_table(rec, path)
    return path


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_evaluate_json_on_a_bundled_session(ckpt, capsys):
    r = _json(capsys, ["evaluate", "--checkpoint", ckpt, "--session", VITRO2, "--seconds", "2",
                       "--json"])
    for key in ("n_bins", "n_units", "base_rate", "protocol", "unit_order", "checkpoint", "data",
                "chance"):
        assert key in r
    assert (r["n_bins"], r["n_units"], r["protocol"], r["unit_order"]) == (1999, 128, "strict",
                                                                           "rate-rank")
    for key in ("roc_auc", "pr_auc", "per_unit_roc_auc_median", "threshold", "precision",
                "recall", "f1"):
        assert key in r["model"]
    assert {k: set(v) >= {"roc_auc", "pr_auc", "bits_per_spike"}
            for k, v in r["baselines"].items()} == dict.fromkeys(ALL_BASELINES, True)
    assert r["loss"] == "dice" and r["chance"]["pr_auc"] == r["base_rate"]
    c = r["comparison"]
    best = max(r["baselines"], key=lambda k: r["baselines"][k]["pr_auc"])
    assert c["best_baseline"] == best and c["blocks"] == 2
    assert c["pr_auc_diff"] == pytest.approx(r["model"]["pr_auc"] - r["baselines"][best]["pr_auc"])
    # Two 1-s blocks cannot give an interval: none is printed, and the output says why.
    assert c["pr_auc_diff_ci95"] is None and "needs 10" in c["no_interval"]


def test_evaluate_more_than_128_units(ckpt, merged, capsys):
    r = _json(capsys, ["evaluate", "--checkpoint", ckpt, "--data", str(merged), "--seconds", "2",
                       "--unit-order", "random:1", "--protocol", "reference",
                       "--threshold-rule", "density", "--baselines", "rate,ewma", "--json"])
    assert r["n_units"] == 128 and r["unit_order"] == "random:1" and r["leaky"]
    assert r["direction"] is None and r["domain"] is None          # not a catalogued session
    # The 128 most active of 253 units, taken from both sessions.
    assert {u[:2] for u in r["units"]} == {"bh", "lh"}
    assert "density" in r["threshold_rule"]


def test_evaluate_text_output(ckpt, capsys):
    assert main(["evaluate", "--checkpoint", ckpt, "--session", VITRO, "--seconds", "1",
                 "--threshold", "0.05", "--baselines", "rate,ewma,glm"]) == 0
    out = capsys.readouterr().out
    assert "unit order recorded" in out and "glm" in out and "(leaky)" in out
    assert ": given" in out and "real spikes" in out


@pytest.mark.parametrize("argv, message", [
    (["--unit-order", "shuffled"], "unknown unit order"),
    (["--threshold", "otsu"], "threshold"),
    (["--seconds", "-1"], "--seconds"),
])
def test_evaluate_errors(ckpt, capsys, argv, message):
    assert main(["evaluate", "--checkpoint", ckpt, "--session", VITRO] + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("spikeviz: error:") and message in err


def test_evaluate_refuses_a_missing_checkpoint(tmp_path, capsys):
    assert main(["evaluate", "--checkpoint", str(tmp_path / "no.safetensors"), "--session",
                 VITRO]) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_table_cli(ckpt, tmp_path, capsys):
    t = _json(capsys, ["table", "--checkpoint", ckpt, "--seconds", "1", "--out",
                       str(tmp_path / "t"), "--json", "--quiet", "--baselines", "rate,ewma"])
    assert len(t["rows"]) == 3 and t["settings"]["seconds"] == 1
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["table.csv", "table.json",
                                                                  "table.md"]
    assert "| cross domain | vitro->vivo | fast | dice |" in (tmp_path / "t" / "table.md").read_text()
    # --add scores only the new checkpoint; its cells join the others (a second run replaces them).
    other = make_checkpoint(tmp_path / f"{VITRO2}-focal.safetensors", name=VITRO2)
    add = ["table", "--add", "--checkpoint", str(other), "--out", str(tmp_path / "t"), "--json",
           "--quiet", "--baselines", "rate,ewma"]
    assert main(add + ["--seconds", "2"]) == 2
    assert "cannot add cells scored another way to the table: seconds 2.0 (the table's 1.0)" \
        in capsys.readouterr().err
    for _ in range(2):
        t = _json(capsys, add + ["--seconds", "1"])
        assert [r["checkpoint"] for r in t["rows"]] == [Path(ckpt).name] * 3 + [other.name] * 3
    assert json.loads((tmp_path / "t" / "table.json").read_text())["rows"] == t["rows"]


def test_generate_says_which_units_a_per_unit_model_left_out(ckpt, merged, tmp_path, capsys):
    out = tmp_path / "g.npz"
    assert main(["generate", "--checkpoint", ckpt, "--data", str(merged), "--seconds", "0.5",
                 "--out", str(out)]) == 0
    assert "note: generated the 128 most active of the 253 units of merged (their train split), " \
           "as evaluate and the dashboard pick them: --units to change" in capsys.readouterr().err
    assert spikeviz.load_recording(out).n_units == 128


def test_a_generalist_is_blended_with_the_glm_unless_asked_not_to(tmp_path, capsys):
    """evaluate and generate score and draw a generalist blended with the recording's coupled
    GLM (weights fitted on the warm-up, named in the output); --without-glm: the model alone, as
    free runs always are."""
    short = tmp_path / "short.npz"   # 80 s: the GLM fits on 40 s, the warm-up from 30 s
    write_table(spikeviz.load_session(VITRO2).slice(0.0, 80.0), short)
    args = ["--checkpoint", "generalist-focal", "--data", str(short), "--seconds", "3"]
    blended = _json(capsys, ["evaluate", *args, "--baselines", "rate", "--json"])
    alone = _json(capsys, ["evaluate", *args, "--baselines", "rate", "--without-glm", "--json"])
    a, b, d, _ = blended["glm_blend"]["weights"]
    assert alone["glm_blend"] is None and b > 0 and d > 0
    assert blended["model"]["pr_auc"] != alone["model"]["pr_auc"]
    assert blended["baselines"] == alone["baselines"] and blended["guard"] == alone["guard"]
    assert main(["evaluate", *args, "--baselines", "rate"]) == 0
    assert (f"blended with glm-coupled: weights {a:.2f} on the model, {b:.2f} on the GLM's own "
            f"terms and {d:.2f} on its partners'" in capsys.readouterr().out)

    def made(*extra):
        out = tmp_path / f"g{len(list(tmp_path.glob('g*.csv')))}.csv"
        assert main(["generate", *args, "--out", str(out), *extra]) == 0
        return json.loads(out.with_name(out.name + ".json").read_text())["generated_by"]

    assert "glm-coupled" in made()["blended_with"]
    assert made("--mode", "free")["blended_with"] is None
    assert made("--without-glm")["blended_with"] is None


def test_generate_draws_a_bins_units_jointly_unless_asked_not_to(tmp_path, capsys):
    """Teacher-forced Bernoulli trains draw a bin's units jointly (the copula fitted on the
    warm-up, named in the provenance and the summary line), free runs too; --independent-draws
    draws each unit on its own, and is refused where it would change nothing."""
    short = tmp_path / "short.npz"   # 80 s: the warm-up ends at 40 s, the copula fits on 20 s
    write_table(spikeviz.load_session(VITRO2).slice(0.0, 80.0), short)
    args = ["generate", "--checkpoint", "generalist-focal", "--data", str(short), "--seconds", "3",
            "--without-glm"]

    def generated(name, *extra):
        out = tmp_path / name
        assert main([*args, "--out", str(out), *extra]) == 0
        return spikeviz.load_recording(out), capsys.readouterr().out

    (joint, said), (alone, _) = generated("j.npz"), generated("i.npz", "--independent-draws")
    copula = joint.source["generated_by"]["joint_draws"]
    assert copula["factors"] == FACTORS and copula["max_loading"] > 0 and "dichotomized" in copula["how"]
    assert "a bin's units drawn jointly" in said
    assert alone.source["generated_by"]["joint_draws"] is None
    assert any(len(a) != len(b) or (a != b).any() for a, b in zip(joint.spike_times, alone.spike_times))
    free, _ = generated("f.npz", "--mode", "free")   # free runs draw jointly too
    assert free.source["generated_by"]["joint_draws"]["factors"] == FACTORS
    assert main([*args, "--out", str(tmp_path / "x.npz"), "--independent-draws", "--draw", "lift"]) == 2
    assert "--independent-draws applies to Bernoulli sampling" in capsys.readouterr().err
