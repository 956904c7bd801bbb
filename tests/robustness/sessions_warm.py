"""`panel serve tests/robustness/sessions_app.py --setup` this (browser.serve(setup=...)): what
`make serve`'s warm.py does for the plain page, for the sessions app's own page, the GLM baseline
on a 10-s window. warm.py's opening view is another checkpoint and window, which no page of this
app shows: its evaluation was wasted, and the eight sessions of test_concurrent_sessions then all
computed their shared first view at once, cold (the LRU cache lets concurrent misses each compute).
SIGUSR1 dumps every thread's stack into the server's log (Server.thread_stacks): what a page that
never settled was waiting for."""
import faulthandler
import signal

from bokeh.document import Document
from panel.io.state import set_curdoc

from spikeviz.dashboard.app import build_app, limit_blas_threads, warm_process
from spikeviz.dashboard.state import BASELINE_ONLY

faulthandler.register(signal.SIGUSR1, all_threads=True)
limit_blas_threads()
doc = Document()
with set_curdoc(doc), doc.models.freeze():   # as app.warm_up builds the plain page
    build_app(checkpoint=BASELINE_ONLY, window_length=10).server_doc(doc)   # sessions_app's page
warm_process()
