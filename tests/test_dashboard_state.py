"""Dashboard view-model without a browser: state changes -> the data each view shows."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import panel as pn
import pytest

from spikeviz.dashboard import app, compute, results, shading, statistics, views, window
from spikeviz.dashboard.cache import LRUCache
from spikeviz.dashboard.figures import figure_png
from spikeviz.dashboard.sources import checked_path, checkpoint_choices
from spikeviz.dashboard.state import BASELINE_ONLY, FITTED_STATES, OPEN_CHECKPOINT, OPEN_FILE, DashboardState
from spikeviz.evaluation import pipeline

VITRO, VIVO = "invitro_210511001_bh", "invivo_NYU-40_2021-04-14_001"
HAS_MODELS = bool(checkpoint_choices())


@pytest.fixture
def predict_calls(monkeypatch):
    """Counts every prediction the dashboard computes (cache misses reach compute.predict)."""
    calls = []
    real = compute.predict

    def spy(make, stretch, keep_P=True, **memo):
        calls.append(stretch)
        return real(make, stretch, keep_P, **memo)

    monkeypatch.setattr(compute, "predict", spy)
    return calls


# The first evaluation of the plain page, shared by the tests of what the page does next (as
# sessions of one server share it): each is computed once, not once per test. Room for the
# entries of a few evaluations (the generalist's too); a test that counts predictions, cache
# misses or quick jobs has a cache of its own.
OPENED = LRUCache(max_items=64)


def make_state(cache: LRUCache | None = None, **params) -> DashboardState:
    # A 10-s window keeps each evaluation around a second on 2 cores; a cache of its own (unless
    # given OPENED) so that the predictions counted are this state's.
    params.setdefault("checkpoint", BASELINE_ONLY)
    cache = LRUCache() if cache is None else cache
    state = DashboardState(threaded=False, window_length=10, cache=cache, **params)
    assert state.error == "", state.error
    return state


def n_points(element) -> int:
    return len(element.data)


def test_first_evaluation_feeds_every_view():
    state = make_state(OPENED, session=VITRO)
    ev, frame = state.evaluation, state.frame
    assert state.direction == "vitro->vitro" and state.threshold_rule == "density"
    assert ev.generator.name == "glm-coupled"
    assert list(ev.predictions) == ["glm-coupled", "rate", "ewma-tuned"]
    # Generated trains are Bernoulli draws by default, their count near the real one.
    assert state.draw == "bernoulli" and 0.8 < frame.fidelity["model"]["count_ratio"] < 1.25
    assert set(frame.fidelity) == {"real", "model", "ceiling", "floor"} and frame.fidelity["ceiling"]
    assert len(statistics.fidelity_table(frame)) == len(statistics.FIDELITY_ROWS)
    # Real raster = the scored target spikes; pooled generated raster = the operating point's.
    state.draw = "pooled"
    frame = state.frame
    assert state.stretch is ev.stretch
    assert n_points(views.real_points(state.stretch)) == frame.op.real_spikes == int(ev.stretch.targets.sum())
    assert n_points(views.generated_points(frame)) == frame.op.predicted_spikes
    T, N = ev.P.shape
    assert views.probability_image(ev).data["p"].shape == (N, T)
    # generator, the three baselines (the generating one's layer empty) and chance
    assert len(views.roc_curves(ev)) == 5 and len(views.pr_curves(ev)) == 5
    assert views.roc_marker(frame).data.iloc[0].tolist() == pytest.approx([frame.op.fpr, frame.op.recall])
    assert n_points(views.overview_points(state.recording)) == state.recording.n_spikes
    assert len(statistics.rate_scatter(frame).get(1).data) == N
    table = statistics.summary_table(frame)
    assert table.loc[table.statistic == "spikes", "generated"].item() == f"{frame.op.predicted_spikes:,}"


def test_threshold_moves_f1_and_generated_raster_without_predicting(predict_calls):
    state = make_state(session=VITRO, draw="pooled")
    assert len(predict_calls) == 3
    misses = state.cache.misses
    before_f1, before_gen = state.frame.op.f1, n_points(views.generated_points(state.frame))
    evaluation = state.evaluation
    state.threshold = state.evaluation.thresholds["density"] * 2
    assert state.threshold_rule == "custom"
    assert state.frame.op.f1 != before_f1
    assert n_points(views.generated_points(state.frame)) != before_gen
    assert state.frame.op.predicted_spikes < state.frame.op.real_spikes
    assert len(predict_calls) == 3 and state.cache.misses == misses
    assert state.evaluation is evaluation   # nothing upstream of the threshold was redone
    state.threshold_rule = "youden"
    assert state.threshold == state.evaluation.thresholds["youden"] and len(predict_calls) == 3


def test_a_threshold_redraws_only_what_depends_on_it(monkeypatch):
    """Under a draw rule other than the pooled threshold, a new threshold moves the operating
    point but keeps the generated trains, their statistics and their views (nothing redrawn);
    another rule level draws new trains."""
    state = make_state(session=VITRO, draw="unit-density")
    frame = state.frame
    sent = []
    real_send = views.hv.streams.Pipe.send
    monkeypatch.setattr(views.hv.streams.Pipe, "send", lambda self, data: (sent.append(data), real_send(self, data)))
    views.raster_plots(state)   # its plots follow the state from now on
    state.threshold = state.evaluation.thresholds["density"] * 2
    assert state.frame.op.threshold != frame.op.threshold and state.frame.op.f1 != frame.op.f1
    assert state.frame.spikes is frame.spikes and state.frame.stats is frame.stats
    assert sent == []
    state.draw_level = state.draw_level * 2
    assert state.frame.spikes is not frame.spikes and len(sent) == 1
    state.draw = "pooled"   # the pooled rule draws at the threshold: a new one redraws
    pooled = state.frame
    state.threshold = state.threshold * 1.5
    assert state.frame.spikes is not pooled.spikes


def test_revisiting_a_window_hits_the_prediction_cache(predict_calls):
    state = make_state(session=VITRO)
    first = state.window
    state.window_start += 5
    assert state.window == (first[0] + 5, first[1] + 5) and len(predict_calls) == 6
    state.window_start -= 5
    assert state.window == first and len(predict_calls) == 6 and state.cache.hits > 0


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_unit_order_and_seed_are_recorded():
    from spikeviz.data.binning import train_units

    state = make_state(session=VITRO, checkpoint="generalist-focal", unit_order="random", seed=3)
    assert state.evaluation.stretch.unit_order == "random:3"
    perm = np.random.default_rng(3).permutation(state.recording.n_units)
    assert list(state.evaluation.stretch.unit_ids) == list(np.asarray(
        train_units(state.recording, 128))[perm])


def test_the_page_scores_what_spikeviz_evaluate_scores():
    """One evaluation core: the page's PR-AUCs are `evaluate`'s on the same window (a generalist
    blended with the recording's coupled GLM in both)."""
    from spikeviz.evaluation.evaluate import evaluate_checkpoint
    from spikeviz.models.checkpoint import load_model

    state = make_state(OPENED, session=VITRO, checkpoint="generalist-focal")
    ev = state.evaluation
    out = evaluate_checkpoint(load_model(state.checkpoint_info.path), state.recording,
                              window_s=tuple(state.window), baselines=["glm-coupled", "ewma-tuned"])
    assert out["glm_blend"] is not None and ev.blended
    from spikeviz.dashboard.app import describe
    assert "blended with the coupled GLM" in describe(state)   # and the page says so
    assert out["model"]["pr_auc"] == pytest.approx(ev.hists["generalist-focal"].pr_auc, rel=1e-6)
    assert out["baselines"]["glm-coupled"]["pr_auc"] == pytest.approx(ev.hists["glm-coupled"].pr_auc, rel=1e-6)
    assert out["baselines"]["ewma-tuned"]["pr_auc"] == pytest.approx(ev.hists["ewma-tuned"].pr_auc, rel=1e-6)


def test_direction_switches_the_test_session_and_offers_unit_agnostic_checkpoints():
    state = make_state(OPENED, session=VITRO)
    state.direction = "vitro->vivo"
    assert state.session == VIVO and state.error == ""
    offered = [shipped for shipped in checkpoint_choices() if shipped.name in state.param.checkpoint.objects]
    assert all(c.any_domain or c.domain == "vivo" for c in offered)
    assert state.evaluation.stretch.unit_order == "recorded"
    # The whole in vivo session is the overview; the window is a slice of its test split.
    assert n_points(views.overview_points(state.recording)) == 458_082
    a, b = window.test_split_s(state.recording)
    assert a <= state.window[0] < state.window[1] <= b
    state.session = VITRO
    assert state.direction == "vitro->vitro"


@pytest.mark.parametrize("path, message", [("/etc/hostname", "only files under"),
                                           ("data/no_such_file.mat", "no such file"),
                                           ("data/catalog.json", "")])
def test_file_errors_are_messages_not_tracebacks(path, message):
    state = make_state(OPENED, session=VITRO)
    state.param.update(session=OPEN_FILE, path=path)
    state.param.trigger("open_file")
    assert state.error and message in state.error and "Traceback" not in state.error
    assert not state.busy


def test_bundled_file_by_path_knows_its_tick():
    state = make_state(OPENED, session=VITRO)
    state.param.update(session=OPEN_FILE, path="data/invivo_NYU-40_2021-04-14_001.asdf.mat",
                       file_domain="vivo")
    state.param.trigger("open_file")
    assert state.error == "" and state.recording.duration_s == pytest.approx(3541.24, abs=0.1)


def test_checked_path_refuses_escapes(tmp_path):
    with pytest.raises(Exception, match="only files under"):
        checked_path("data/../../etc/passwd")
    assert checked_path("data/catalog.json").name == "catalog.json"


def test_free_running_needs_a_checkpoint():
    state = make_state(OPENED, session=VITRO)
    state.mode = "free"
    assert "needs a model checkpoint" in state.error


def test_lru_cache_is_bounded_in_bytes():
    cache = LRUCache(max_bytes=250, max_items=10)
    for k in range(4):
        cache.get(k, lambda: np.zeros(100, np.uint8))
    assert len(cache) == 2 and cache.nbytes == 200 and cache.misses == 4
    cache.get(3, lambda: None)
    assert cache.hits == 1


def test_lru_cache_returns_but_does_not_keep_a_value_over_its_bound():
    cache = LRUCache(max_bytes=250, max_items=10)
    cache.get("small", lambda: np.zeros(100, np.uint8))
    big = cache.get("big", lambda: np.zeros(300, np.uint8))
    assert big.shape == (300,) and "big" not in cache and "small" in cache and cache.nbytes == 100
    cache.get("big", lambda: big)
    assert cache.misses == 3


def test_lru_cache_is_bounded_in_entries():
    # Recordings, fits and plots count no bytes: the entry bound alone keeps them few.
    cache = LRUCache(max_bytes=250, max_items=2)
    for k in range(3):
        cache.get(k, dict)
    cache.get(1, dict)
    cache.get(3, dict)
    assert len(cache) == 2 and 1 in cache and 3 in cache and cache.hits == 1


def test_exports_use_the_same_data():
    state = make_state(OPENED, session=VITRO)
    png = figure_png(state.evaluation, state.frame, "test")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    table = results.current_metrics(state.evaluation, state.frame)
    assert list(table.predictor) == ["glm-coupled", "rate", "ewma-tuned"]
    assert table.loc[0, "F1 at threshold"] == pytest.approx(state.frame.op.f1, abs=1e-4)


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_checkpoint_generates_and_threshold_does_not_repredict(predict_calls):
    name = next(c.name for c in checkpoint_choices() if c.session == VITRO and c.preset != "transfer")
    state = make_state(session=VITRO, checkpoint=name)
    # The generator, then the baselines from the simplest (whatever order they were computed in)
    assert list(state.evaluation.predictions) == [name, *compute.BASELINES]
    assert state.direction == "vitro->vitro" and len(predict_calls) == 4
    f1 = state.frame.op.f1
    state.threshold = state.evaluation.thresholds["max-f1"]
    assert state.frame.op.f1 >= f1 - 1e-9 and len(predict_calls) == 4


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_free_running_samples_ignore_the_threshold():
    name = next(c.name for c in checkpoint_choices() if c.session == VITRO and c.preset != "transfer")
    state = make_state(session=VITRO, checkpoint=name, mode="free", free_s=1.0)
    assert state.error == "" and state.evaluation.free.shape == (1000, 128)
    spikes = state.frame.spikes[0].size
    state.threshold = 0.9
    assert state.frame.spikes[0].size == spikes and state.frame.op.threshold <= 0.9


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_a_free_run_draws_jointly_unless_unticked_and_keeps_its_start_across_seeds(monkeypatch):
    """The checkbox re-runs a free run with independent draws (the provenance says so); a new
    seed reuses the free run's start (calibration and copula), which no seed changes."""
    starts = []
    real = compute.free_start
    monkeypatch.setattr(compute, "free_start", lambda *a: starts.append(a) or real(*a))
    state = make_state(session=VITRO, checkpoint="generalist-focal", mode="free", free_s=2.0)
    assert state.error == "" and state.evaluation.free_copula is not None
    assert state.frame.copula is state.evaluation.free_copula and len(starts) == 1
    joint = state.evaluation.free
    state.joint = False
    assert state.error == "" and state.evaluation.mode == "free"
    assert state.evaluation.free_copula is None and state.frame.copula is None
    assert not np.array_equal(state.evaluation.free, joint) and len(starts) == 2
    state.seed = 1
    assert state.error == "" and state.evaluation.free_copula is None and len(starts) == 2
    state.joint = True
    assert state.evaluation.free_copula is not None and len(starts) == 2


def test_a_free_run_covers_the_whole_window_unless_shortened():
    """The free-running length follows a longer window while it covered the whole window; a
    shorter length chosen by hand stays."""
    state = make_state(OPENED, session=VITRO)
    assert state.free_s >= 10.0
    state.window_length = 60
    assert state.free_s == 60.0 and state.window[1] - state.window[0] == 60.0
    state.free_s = 20.0
    state.window_length = 10
    assert state.free_s == 20.0


def test_the_opening_window_is_read_back_from_the_disk_cache(tmp_path, monkeypatch):
    """A fresh server (a new in-memory cache) opening a session on its default window reads the
    predictions and calibration another server stored, fitting and predicting nothing."""
    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path))
    first = DashboardState(threaded=False, session=VITRO, checkpoint=BASELINE_ONLY, cache=LRUCache())
    assert first.error == "" and first.window == window.default_window(first.recording)
    assert any(tmp_path.rglob("P.npy")) and any(tmp_path.rglob("calibration.json"))

    def refit(*args, **kwargs):
        raise AssertionError("refitted although the predictions were on disk")

    monkeypatch.setattr(compute, "fit_baseline", refit)
    monkeypatch.setattr(pipeline, "fit_target_calibration", refit)
    again = DashboardState(threaded=False, session=VITRO, checkpoint=BASELINE_ONLY, cache=LRUCache())
    assert again.error == ""
    a, b = first.evaluation, again.evaluation
    np.testing.assert_array_equal(a.P, b.P)
    np.testing.assert_array_equal(a.calibration.offsets, b.calibration.offsets)
    assert a.calibration.temperature == b.calibration.temperature and a.thresholds == b.thresholds


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_cross_session_table_is_computed_once_and_cached(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    ckpt = next(c.path for c in checkpoint_choices() if c.preset != "transfer")
    (models / ckpt.name).write_bytes(ckpt.read_bytes())
    monkeypatch.setenv("SPIKEVIZ_MODELS", str(models))
    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(results, "TABLE_SECONDS", 2.0)
    # What is cached and read back, not the baselines in it: the cheap ones only (fitting the GLMs
    # on each session's whole train split was most of this test's time; every baseline is scored
    # in test_baselines.py and in the grid's cells).
    build_table = results.build_table
    monkeypatch.setattr(results, "build_table",
                        lambda *args, **kw: build_table(*args, baselines=("rate", "ewma"), **kw))
    assert results.cross_session_table() is None
    fractions = []
    table = results.build_cross_session_table(lambda f, m: fractions.append(f))
    assert len(table["rows"]) == 3 and fractions == sorted(fractions)
    assert results.cross_session_table() == table   # from the disk cache now
    summary, rows = results.table_frames(table)
    assert set(rows.test_session) == {VITRO, VIVO, "invitro_210511001_lh"} and len(summary) >= 2


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
@pytest.mark.skipif(not HAS_MODELS, reason="needs the shipped checkpoints")
def test_a_checkpoint_opened_by_path_sets_the_direction_from_its_domain():
    """An in vivo session's model loaded by path on an in vitro session is vivo->vitro (the
    direction stayed vitro->vitro when "checkpoint file…" was already chosen)."""
    state = make_state(OPENED, session=VITRO)
    state.checkpoint = OPEN_CHECKPOINT
    assert state.direction == "vitro->vitro"
    state.checkpoint_path = f"models/{VIVO}-focal.safetensors"
    state.param.trigger("open_checkpoint")
    assert (state.direction, state.session, state.checkpoint) == ("vivo->vitro", VITRO, OPEN_CHECKPOINT)
    assert state.error == "" and state.evaluation.generator.path.name == f"{VIVO}-focal.safetensors"


def test_checkpoint_by_path_is_checked_against_the_roots():
    state = make_state(OPENED, session=VITRO)
    state.checkpoint_path = "/etc/hostname"
    state.param.trigger("open_checkpoint")
    assert "only files under" in state.error
    ckpt = next(c for c in checkpoint_choices() if c.session == VITRO and c.preset != "transfer")
    state.checkpoint_path = str(ckpt.path.relative_to(ckpt.path.parents[1]))   # models/<name>
    state.param.trigger("open_checkpoint")
    assert state.error == "" and state.evaluation.generator.name == ckpt.name
    assert state.direction == "vitro->vitro" and not state.busy


def test_a_typed_threshold_survives_new_evaluations():
    """Only a pressed preset moves the threshold: a new session's evaluation keeps a typed one."""
    state = make_state(OPENED, session=VITRO)
    state.threshold = 0.0123
    assert state.threshold_rule == "custom"
    state.session = VIVO
    assert state.error == "" and state.evaluation.data_key == (VIVO,)
    assert state.threshold == 0.0123 and state.threshold_rule == "custom"
    assert state.frame.threshold == pytest.approx(0.0123, rel=0.02)
    state.threshold_rule = "density"
    assert state.threshold == state.evaluation.thresholds["density"]


def test_a_switch_clears_the_old_results_before_the_new_ones_arrive(monkeypatch):
    """Views never show the previous session's evaluation while the new one is computed."""
    state = make_state(session=VITRO)
    seen = []
    real_plan = compute.plan

    def spy(recording, *args, **kwargs):
        seen.append((state.stretch, state.evaluation, state.frame))
        return real_plan(recording, *args, **kwargs)

    monkeypatch.setattr(compute, "plan", spy)
    state.session = "invitro_210511001_lh"
    assert seen == [(None, None, None)]
    assert state.evaluation.data_key == ("invitro_210511001_lh",)


def test_the_baseline_and_the_population_states_never_show_each_others_results():
    """Both fit on the recording and share its setup; each chosen after the other evaluated
    showed the other's results under its own name."""
    state = make_state(OPENED, session=VITRO)
    assert state.evaluation.generator.name == "glm-coupled"
    state.checkpoint = FITTED_STATES
    assert state.evaluation.generator.name == "states" and "generator: states" in app.readout(state.frame)
    state.checkpoint = BASELINE_ONLY
    assert state.evaluation.generator.name == "glm-coupled"


def test_waiting_views_dim_their_own_session_and_hide_another():
    state = make_state(session=VITRO)
    view = views.once_ready(state, "Real spikes", "stretch", lambda: pn.pane.Markdown("real"))[1]
    shown = []
    view.param.watch(lambda event: shown.append(event.new), "css_classes")
    state.window_start += 5        # same session: greyed out, then shown
    assert shown == [["sv-stale"], []]
    shown.clear()
    state.session = "invitro_210511001_lh"   # another session: hidden until its own data comes
    assert shown == [["sv-hidden"], []] and state.stretch is not None
    shown.clear()
    # A switch while the window is recomputed: greyed first, then hidden when the recording goes.
    state.param.update(stretch=None)
    state.param.update(recording=None)
    assert shown == [["sv-stale"], ["sv-hidden"]]


def test_dropped_files_open_and_bad_ones_are_refused(tmp_path, monkeypatch):
    from spikeviz.dashboard import upload
    from spikeviz.data.io import write_recording

    state = make_state(OPENED, session=VITRO)
    part = state.recording.slice(0.0, 60.0)
    write_recording(part, tmp_path / "rec.csv")
    state.open_upload("../../rec.csv", (tmp_path / "rec.csv").read_bytes())
    assert state.error == "" and state.session == OPEN_FILE
    assert state.recording.n_spikes == part.n_spikes and state.frame is not None
    stored = state._upload_dir
    assert stored is not None and state.path.startswith(str(stored))

    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("phy/../../escape.csv", "unit,time_s\n1,0.5\n")
    state.open_upload("sorting.zip", buf.getvalue())
    assert "outside its folder" in state.error and not (stored.parent / "escape.csv").exists()
    # A refused drop leaves the recording on screen, and the file behind it, as they were.
    assert Path(state.path).is_file() and state.recording.n_spikes == part.n_spikes
    state.open_upload("notes.exe", b"MZ")
    assert "not a recording type" in state.error
    # The drop zone takes any file for the server to check: its own check of MIME types turned
    # away every .nwb, .mat, .npz and .parquet a browser gives from disk (they have none).
    assert app.drop_zone(state).accepted_filetypes == []
    monkeypatch.setattr(upload, "MAX_UPLOAD_MB", 0.001)
    state.open_upload("rec.csv", (tmp_path / "rec.csv").read_bytes())
    assert "upload limit" in state.error
    state.close()
    assert not stored.exists()


def test_generated_trains_download_with_provenance(tmp_path):
    from spikeviz.dashboard.trains import as_file, generated_recording
    from spikeviz.data.io import load_recording

    state = make_state(OPENED, session=VITRO, draw="pooled")
    state.threshold = state.evaluation.thresholds["density"] * 1.5
    gen = generated_recording(state.frame, state.recording, state.threshold_rule, state.seed)
    assert gen.n_spikes == state.frame.op.predicted_spikes
    (tmp_path / "g.nwb").write_bytes(as_file(gen, "g.nwb"))
    back = load_recording(tmp_path / "g.nwb")
    made = back.source["generated_by"]
    assert back.n_spikes == gen.n_spikes and made["threshold"] == pytest.approx(state.frame.threshold)
    assert made["data"] == VITRO and made["generator"] == "glm-coupled" and made["threshold_rule"] is None
    # A CSV comes zipped with its sidecar: unzipped, it reads back with its provenance.
    with zipfile.ZipFile(io.BytesIO(as_file(gen, "g.csv"))) as archive:
        assert sorted(archive.namelist()) == ["g.csv", "g.csv.json"]
        archive.extractall(tmp_path / "csv")
    table = load_recording(tmp_path / "csv" / "g.csv")
    assert table.n_spikes == gen.n_spikes and table.source["generated_by"] == made


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_fit_to_this_recording_adds_a_checkpoint_that_scores_it():
    """One short epoch of fine-tuning on the loaded recording: a new checkpoint of this page,
    selected and evaluated, trained only on the recording's first seconds."""
    from spikeviz.models.checkpoint import load_model

    state = make_state(OPENED, session=VITRO, checkpoint="generalist-focal")
    state.param.update(fit_seconds=40.0, fit_epochs=1)
    state.param.trigger("fit")
    assert state.error == "" and not state.fit_busy and state.fit_status.startswith("fitted")
    name = state.checkpoint
    assert name != "generalist-focal" and name in state.param.checkpoint.objects
    info = state.checkpoint_info
    assert info.path.parent == state._upload_dir and info.any_domain
    fitted, start = load_model(info.path), load_model(state._checkpoints["generalist-focal"].path)
    assert fitted.meta["seconds"] == 40.0 and fitted.meta["content_hash"] == state.recording.content_hash()
    moved = [k for k, v in fitted.state_dict().items() if not (v == start.state_dict()[k]).all()]
    assert moved   # it trained from the generalist's weights
    assert state.evaluation.generator.name == name and state.frame is not None
    state.close()
    assert not info.path.exists()


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_cancel_stops_a_fit_and_the_page_goes_on():
    state = make_state(OPENED, session=VITRO, checkpoint="generalist-focal")
    state.param.update(fit_seconds=40.0, fit_epochs=3)
    # Cancel pressed as soon as the fit reports its first batch.
    state.param.watch(lambda e: state.param.trigger("cancel_fit") if e.new else None, "fit_progress")
    options = list(state.param.checkpoint.objects)
    state.param.trigger("fit")
    assert state.fit_status.startswith("cancelled") and not state.fit_busy and state.error == ""
    assert list(state.param.checkpoint.objects) == options and state.checkpoint == "generalist-focal"
    state.threshold = state.evaluation.thresholds["density"] * 2
    assert state.frame.threshold == pytest.approx(state.threshold, rel=0.02)


def test_streamed_plots_keep_their_glyphs_across_evaluations():
    """A new evaluation updates the plots' data: no glyph is added to the page (a label that
    changed with the data used to add renderers on every update, racing the browser)."""
    import holoviews as hv

    state = make_state(OPENED, session=VITRO)
    plots = {name: hv.renderer("bokeh").get_plot(views.streamed(state, "evaluation", make))
             for name, make in (("roc", views.roc_curves), ("pr", views.pr_curves))}
    before = {name: len(p.state.renderers) for name, p in plots.items()}
    data = plots["roc"].state.renderers[0].data_source.data["TPR"].copy()
    state.window_start += 5
    assert {name: len(p.state.renderers) for name, p in plots.items()} == before
    assert not np.array_equal(plots["roc"].state.renderers[0].data_source.data["TPR"], data)


def test_views_built_before_the_first_evaluation_follow_it():
    """The page builds its plots before any result: the first evaluation must fill them with the
    same glyphs (none added, which raced the browser) and move their ranges to the data (HoloViews
    kept an empty first frame's ranges when framewise was set on the overlay)."""
    import holoviews as hv

    state = make_state(OPENED, session=VITRO)
    ev, frame = state.evaluation, state.frame
    state.param.update(evaluation=None, frame=None)
    makes = {"roc": ("evaluation", views.roc_curves), "pr": ("evaluation", views.pr_curves),
             "rates": ("frame", statistics.rate_scatter), "isi": ("frame", statistics.isi_curves),
             "population": ("frame", statistics.population_rate),
             "correlations": ("frame", lambda f: statistics.correlation_image(f and f.stats, "generated"))}
    plots = {key: hv.renderer("bokeh").get_plot(views.streamed(state, name, make))
             for key, (name, make) in makes.items()}
    stretch = state.stretch
    state.stretch = None
    rasters = [hv.renderer("bokeh").get_plot(p) for p in views.raster_plots(state).values()]
    glyphs = {key: len(p.state.renderers) for key, p in plots.items()}
    state.param.update(stretch=stretch, evaluation=ev, frame=frame)
    assert all(r.current_frame.data.shape[:2] != (1, 1) for r in rasters)   # every raster drawn
    assert {key: len(p.state.renderers) for key, p in plots.items()} == glyphs
    x = plots["population"].state.x_range
    assert (x.start, x.end) == pytest.approx((ev.stretch.start_s, ev.stretch.start_s + ev.stretch.duration_s), abs=0.1)
    assert plots["correlations"].state.x_range.end > 100   # 128 units, not the empty 2 x 2
    assert plots["isi"].state.x_range.end > 10             # ms, on a log axis


def test_a_seen_session_comes_back_at_once(monkeypatch):
    """Switching back to a session seen before finds its recording, plan and evaluation cached, so
    every step runs at once (in a server: with the change, in one message to the page), and its
    generated trains are the ones drawn before."""
    from spikeviz.dashboard.jobs import Jobs

    state = make_state(session=VITRO, draw="unit-density")
    first = state.frame
    state.session = "invitro_210511001_lh"
    submitted = []
    real_submit = Jobs.submit
    monkeypatch.setattr(Jobs, "submit", lambda self, kind, *args, quick=False: (
        submitted.append((kind, quick)), real_submit(self, kind, *args, quick=quick))[1])
    state.session = VITRO
    assert submitted == [("load", True), ("evaluate", True), ("evaluate", True)]
    assert state.evaluation is first.evaluation and state.frame.spikes is first.spikes
    state.window_start += 5   # a window never seen: planned and evaluated in the background
    assert submitted[3:] == [("evaluate", False), ("evaluate", False)]


def test_the_overview_marks_the_window_without_redrawing(monkeypatch, tmp_path):
    """The test split and the window are boxes on the whole-session raster that follow the state;
    moving the window aggregates nothing again."""
    import holoviews as hv

    state = make_state(OPENED, session=VITRO)
    aggregated = []
    real = shading.ds.Canvas.points
    monkeypatch.setattr(shading, "VIEW_CACHE", LRUCache())   # drawn here, not by an earlier test
    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path))       # nor read from its disk
    monkeypatch.setattr(shading.ds.Canvas, "points", lambda self, *a, **k: (aggregated.append(1), real(self, *a, **k))[1])
    plot = hv.renderer("bokeh").get_plot(views.raster_plots(state)["overview"])
    test, box = plot.handles["spans"]
    assert (test.left, test.right) == window.test_split_s(state.recording)
    assert (box.left, box.right) == state.window and aggregated
    drawn = len(aggregated)
    state.window_start += 5
    assert (box.left, box.right) == state.window and len(aggregated) == drawn


def test_rasters_are_drawn_the_right_way_up():
    """Unit 0 is the bottom row of every raster image, time runs left to right, and the image
    covers the range it was drawn for."""
    import holoviews as hv

    points = hv.Points(pd.DataFrame({"time": [0.5, 9.5], "unit": [0.0, 0.0]}), [views.TIME, views.UNIT])
    P = np.zeros((100, 4), np.float32)
    P[90:, 0] = 1.0   # unit 0, last tenth of the window
    ev = type("Ev", (), {"P": P, "stretch": type("S", (), {"start_s": 0.0, "bin_ms": 100.0})})()
    for element in (points, views.probability_image(ev)):
        rgb = shading.shaded_raster(element, ["#ffffff", "#000000"], (0.0, 10.0), (-0.5, 3.5), 50, 40)
        assert rgb.bounds.lbrt() == (0.0, -0.5, 10.0, 3.5)
        pixels = rgb.data   # rows top-down, as the browser draws them
        dark = np.argwhere((pixels[:, :, 0].astype(int) < 128) & (pixels[:, :, 3] > 0))   # many spikes, high p
        assert len(dark) and dark[:, 0].min() >= 40 - 10 - 3, dark   # unit 0: the bottom tenth rows (spread 3 px)
        assert dark[:, 1].max() >= 45   # the late spike (or the high p) at the right edge


def test_a_window_cut_by_the_test_split_says_so(tmp_path):
    from spikeviz.data.io import write_recording

    state = make_state(OPENED, session=VITRO)
    # .npz keeps the duration (a CSV alone ends at its last spike; its sidecar holds the duration)
    write_recording(state.recording.slice(0.0, 60.0), tmp_path / "short.npz")
    state.window_length = 30
    state.open_upload("short.npz", (tmp_path / "short.npz").read_bytes())
    # The test split of 60 s is 45-60 s: the 30-s length gives a 15-s window, and the page says so.
    assert state.error == "" and tuple(state.window) == (45.0, 60.0)
    assert state.window_note == "The window is 15 s, not 30 s: this recording's test split ends at 60 s."
    state.window_length = 10
    assert state.window_note == ""


def test_a_fit_longer_than_the_recording_says_what_it_uses():
    from spikeviz.dashboard.fitting import fit_span

    assert fit_span(240.0, 120.0) == (120.0, "the whole 120-s recording, not the first 240 s asked: "
                                             "its first 60 s train")
    assert fit_span(40.0, 400.0) == (40.0, "")


def test_a_cli_checkpoint_names_the_recording_it_was_trained_on(tmp_path):
    # `spikeviz train` on a file records the recording as "data", no bundled "session".
    from spikeviz.dashboard.sources import read_checkpoint

    from .robustness.hostile import good_checkpoint

    path = good_checkpoint(tmp_path / "mine.safetensors", data="lab_rec_07", data_path="/lab/lab_rec_07.nwb")
    assert read_checkpoint(path).session == "lab_rec_07"


def test_a_corpus_generalist_names_its_sessions_and_counts_the_other_recordings(tmp_path):
    from spikeviz.dashboard.sources import read_checkpoint

    from .robustness.hostile import good_checkpoint

    corpus = [f"aplysia_{i}" for i in range(9)] + ["rat_ca1_lineartrack"]
    path = good_checkpoint(tmp_path / "g.safetensors", preset="generalist",
                           sessions=[VITRO, VIVO, *[None] * 10], data=" + ".join([VITRO, VIVO, *corpus]))
    assert read_checkpoint(path).session == f"{VITRO} + {VIVO} + 10 other recordings"

