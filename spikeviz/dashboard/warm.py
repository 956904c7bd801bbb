"""What `panel serve --setup` runs before the server listens: the page's imports, the opening page built once (its evaluation into the caches all browser sessions share, its raster images into the view cache), then the rest of the process warmed (app.warm_process). Without --setup, the first page request pays the first two and warms the rest after it is shown."""
import sys
import time

from spikeviz.dashboard.app import limit_blas_threads, warm_process, warm_up
from spikeviz.dashboard.state import DashboardState

t0 = time.perf_counter()
print("spikeviz: evaluating the opening view before serving (a first start on this machine fills "
      "the prediction cache: about a minute on 2 cores)", file=sys.stderr, flush=True)
limit_blas_threads()
state = DashboardState(threaded=False)
if not state.error:
    warm_up()
state.close()
warm_process()
print(f"spikeviz: ready in {time.perf_counter() - t0:.1f} s"
      + (f" (the opening view failed: {state.error})" if state.error else ""), file=sys.stderr, flush=True)
