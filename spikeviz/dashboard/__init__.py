"""The Panel dashboard (`panel serve app.py`): only this package imports Panel.

Importing it is light (Panel, Bokeh, NumPy): `serve` puts up the opening page (opening.py) while
the full page (app.py) is imported, unless it already is."""
from . import sync
from .opening import serve

sync.install()

__all__ = ["serve"]
