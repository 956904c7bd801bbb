"""What `panel serve --setup` runs before the server listens: the page's imports, the opening page built once (its evaluation into the caches all browser sessions share, its raster images into the view cache) and the compiled free-running loops."""
import gc
import sys
import time

from spikeviz.generation import fused
from spikeviz.dashboard.app import limit_blas_threads, warm_up
from spikeviz.dashboard.state import DashboardState

t0 = time.perf_counter()
print("spikeviz: evaluating the opening view before serving (a first start on this machine fills "
      "the prediction cache: about a minute on 2 cores)", file=sys.stderr, flush=True)
limit_blas_threads()
state = DashboardState(threaded=False)
if not state.error:
    warm_up()
state.close()
fused.warm_up()
# The warmed caches and imports are ~600k objects that live as long as the server: frozen, a
# full collection no longer walks them (it cost 0.55 s in the first page's request).
gc.collect()
gc.freeze()
print(f"spikeviz: ready in {time.perf_counter() - t0:.1f} s"
      + (f" (the opening view failed: {state.error})" if state.error else ""), file=sys.stderr, flush=True)
