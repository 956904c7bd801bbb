"""`panel serve` this for the concurrency test and the random walk (test_dashboard_walk): the
dashboard with the GLM baseline and a 10-s window, so eight sessions, or a walk's every step,
evaluate in seconds on two cores."""
from spikeviz.dashboard import serve
from spikeviz.dashboard.state import BASELINE_ONLY

serve(checkpoint=BASELINE_ONLY, window_length=10)
