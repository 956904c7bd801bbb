"""`panel serve app.py`: the spikeviz dashboard on the bundled sessions and shipped checkpoints."""
import panel as pn

pn.extension()
pn.Column("# spikeviz", "The dashboard is being built.").servable(title="spikeviz")
