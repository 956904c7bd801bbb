"""The Panel dashboard (`panel serve app.py`): only this package imports Panel."""
from . import sync
from .app import build_app, serve

sync.install()

__all__ = ["build_app", "serve"]
