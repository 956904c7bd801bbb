"""The Panel dashboard (`panel serve app.py`): only this package imports Panel."""
from .app import build_app

__all__ = ["build_app"]
