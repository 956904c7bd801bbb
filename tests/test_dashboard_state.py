"""Dashboard view-model without a browser: state changes -> the data each view shows."""
from __future__ import annotations

import numpy as np
import pytest

from spikeviz.dashboard import compute, results, views
from spikeviz.dashboard.figures import figure_png
from spikeviz.dashboard.sources import checked_path, shipped_checkpoints
from spikeviz.dashboard.state import BASELINE_ONLY, OPEN_FILE, DashboardState

VITRO, VIVO = "invitro_210511001_bh", "invivo_NYU-40_2021-04-14_001"
HAS_MODELS = bool(shipped_checkpoints())


@pytest.fixture
def predict_calls(monkeypatch):
    """Counts every prediction the dashboard computes (cache misses reach compute.predict)."""
    calls = []
    real = compute.predict

    def spy(predictor, stretch, keep_P=True):
        calls.append(getattr(predictor, "name", type(predictor).__name__))
        return real(predictor, stretch, keep_P)

    monkeypatch.setattr(compute, "predict", spy)
    return calls


def make_state(**params) -> DashboardState:
    # A 10-s window keeps each evaluation around a second on 2 cores.
    params.setdefault("checkpoint", BASELINE_ONLY)
    state = DashboardState(threaded=False, window=(0.0, 10.0), **params)
    assert state.error == "", state.error
    return state


def n_points(element) -> int:
    return len(element.data)


def test_first_evaluation_feeds_every_view():
    state = make_state(session=VITRO)
    ev, frame = state.evaluation, state.frame
    assert state.direction == "vitro->vitro" and state.preset == "density"
    assert ev.generator.name == "glm" and list(ev.predictions) == ["glm", "rate", "ewma"]
    # Real raster = the scored target spikes; generated raster = the operating point's predictions.
    assert n_points(views.real_points(ev)) == frame.op.real_spikes == int(ev.stretch.targets.sum())
    assert n_points(views.generated_points(frame, ev)) == frame.op.predicted_spikes
    T, N = ev.P.shape
    assert views.probability_image(ev).data.shape == (N, T)
    assert len(views.roc_curves(ev)) == 4 and len(views.pr_curves(ev)) == 4   # 3 predictors + chance
    assert views.roc_marker(frame).data.iloc[0].tolist() == pytest.approx([frame.op.fpr, frame.op.recall])
    assert n_points(views.overview_points(state.recording)) == state.recording.n_spikes
    assert len(views.rate_scatter(ev, frame).get(1).data) == N
    table = views.summary_table(ev, frame)
    assert table.loc[table.statistic == "spikes", "generated"].item() == f"{frame.op.predicted_spikes:,}"


def test_threshold_moves_f1_and_generated_raster_without_predicting(predict_calls):
    state = make_state(session=VITRO)
    assert len(predict_calls) == 3
    misses = state.cache.misses
    before_f1, before_gen = state.frame.op.f1, n_points(views.generated_points(state.frame, state.evaluation))
    evaluation = state.evaluation
    state.threshold = state.evaluation.presets["density"] * 2
    assert state.preset == "custom"
    assert state.frame.op.f1 != before_f1
    assert n_points(views.generated_points(state.frame, state.evaluation)) != before_gen
    assert state.frame.op.predicted_spikes < state.frame.op.real_spikes
    assert predict_calls == ["glm", "rate", "ewma"] and state.cache.misses == misses
    assert state.evaluation is evaluation   # nothing upstream of the threshold was redone
    state.preset = "youden"
    assert state.threshold == state.evaluation.presets["youden"] and len(predict_calls) == 3


def test_revisiting_a_window_hits_the_prediction_cache(predict_calls):
    state = make_state(session=VITRO)
    first = state.window
    state.window = (first[0] + 5, first[1] + 5)
    assert len(predict_calls) == 6
    state.window = first
    assert len(predict_calls) == 6 and state.cache.hits > 0


def test_unit_order_and_seed_are_recorded():
    state = make_state(session=VITRO, unit_order="random", seed=3)
    assert state.evaluation.stretch.policy == "random:3"
    perm = np.random.default_rng(3).permutation(state.recording.n_units)
    assert list(state.evaluation.stretch.unit_ids) == list(np.asarray(
        compute.select_units(state.recording, 128, "rate"))[perm])


def test_direction_switches_the_test_session_and_baseline_source():
    state = make_state(session=VITRO)
    state.direction = "vitro->vivo"
    assert state.session == VIVO and state.error == ""
    assert state.evaluation.source.startswith(VITRO) and state.evaluation.stretch.policy == "rate-rank"
    # The whole in vivo session is the overview; the window is a slice of its test split.
    assert n_points(views.overview_points(state.recording)) == 458_082
    a, b = compute.test_split_s(state.recording)
    assert a <= state.window[0] < state.window[1] <= b
    state.session = VITRO
    assert state.direction == "vitro->vitro"


@pytest.mark.parametrize("path, message", [("/etc/hostname", "only files under"),
                                           ("data/no_such_file.mat", "no such file"),
                                           ("data/catalog.json", "")])
def test_file_errors_are_messages_not_tracebacks(path, message):
    state = make_state(session=VITRO)
    state.param.update(session=OPEN_FILE, path=path)
    state.param.trigger("open_file")
    assert state.error and message in state.error and "Traceback" not in state.error
    assert not state.busy


def test_bundled_file_by_path_knows_its_tick():
    state = make_state(session=VITRO)
    state.param.update(session=OPEN_FILE, path="data/invivo_NYU-40_2021-04-14_001.asdf.mat",
                       file_domain="vivo")
    state.param.trigger("open_file")
    assert state.error == "" and state.recording.duration_s == pytest.approx(3541.24, abs=0.1)


def test_checked_path_refuses_escapes(tmp_path):
    with pytest.raises(Exception, match="only files under"):
        checked_path("data/../../etc/passwd")
    assert checked_path("data/catalog.json").name == "catalog.json"


def test_free_running_needs_a_checkpoint():
    state = make_state(session=VITRO)
    state.mode = "free"
    assert "needs a model checkpoint" in state.error


def test_lru_cache_is_bounded_in_bytes():
    cache = compute.LRUCache(max_bytes=250, max_items=10)
    for k in range(4):
        cache.get(k, lambda: np.zeros(100, np.uint8))
    assert len(cache) == 2 and cache.nbytes == 200 and cache.misses == 4
    cache.get(3, lambda: None)
    assert cache.hits == 1


def test_exports_use_the_same_data():
    state = make_state(session=VITRO)
    png = figure_png(state.evaluation, state.frame, "test")
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    table = results.current_metrics(state.evaluation, state.frame)
    assert list(table.predictor) == ["glm", "rate", "ewma"]
    assert table.loc[0, "F1 at threshold"] == pytest.approx(state.frame.op.f1, abs=1e-4)


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_checkpoint_generates_and_threshold_does_not_repredict(predict_calls):
    name = next(c.name for c in shipped_checkpoints() if c.session == VITRO and c.preset != "transfer")
    state = make_state(session=VITRO, checkpoint=name)
    assert list(state.evaluation.predictions)[0] == name and state.direction == "vitro->vitro"
    assert len(predict_calls) == 4
    f1 = state.frame.op.f1
    state.threshold = state.evaluation.presets["max-f1"]
    assert state.frame.op.f1 >= f1 - 1e-9 and len(predict_calls) == 4


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_free_running_samples_ignore_the_threshold():
    name = next(c.name for c in shipped_checkpoints() if c.session == VITRO and c.preset != "transfer")
    state = make_state(session=VITRO, checkpoint=name, mode="free", free_s=1.0)
    assert state.error == "" and state.evaluation.free.shape == (1000, 128)
    spikes = state.frame.spikes[0].size
    state.threshold = 0.9
    assert state.frame.spikes[0].size == spikes and state.frame.op.threshold <= 0.9


@pytest.mark.slow
@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_cross_session_table_is_computed_once_and_cached(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    ckpt = next(c.path for c in shipped_checkpoints() if c.preset != "transfer")
    (models / ckpt.name).write_bytes(ckpt.read_bytes())
    monkeypatch.setenv("SPIKEVIZ_MODELS", str(models))
    monkeypatch.setenv("SPIKEVIZ_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(results, "TABLE_SECONDS", 2.0)
    assert results.cross_session_table() is None
    fractions = []
    table = results.build_cross_session_table(lambda f, m: fractions.append(f))
    assert len(table["rows"]) == 3 and fractions == sorted(fractions)
    assert results.cross_session_table() == table   # from the disk cache now
    summary, rows = results.table_frames(table)
    assert set(rows.test_session) == {VITRO, VIVO, "invitro_210511001_lh"} and len(summary) >= 2


@pytest.mark.skipif(not HAS_MODELS, reason="no shipped checkpoints in models/")
def test_checkpoint_by_path_is_checked_against_the_roots():
    state = make_state(session=VITRO)
    state.checkpoint_path = "/etc/hostname"
    state.param.trigger("open_checkpoint")
    assert "only files under" in state.error
    ckpt = next(c for c in shipped_checkpoints() if c.session == VITRO and c.preset != "transfer")
    state.checkpoint_path = str(ckpt.path.relative_to(ckpt.path.parents[1]))   # models/<name>
    state.param.trigger("open_checkpoint")
    assert state.error == "" and state.evaluation.generator.name == ckpt.name
    assert state.direction == "vitro->vitro" and not state.busy
