"""`panel serve app.py`: the spikeviz dashboard on the bundled sessions and shipped checkpoints."""
from spikeviz.dashboard import serve

serve()
