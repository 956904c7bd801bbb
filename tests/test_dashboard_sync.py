"""A model added on the server and not yet sent stays unsent when the browser sends a change."""
from __future__ import annotations

import json

from bokeh.document import Document
from bokeh.models import Column, Div, Slider
from bokeh.protocol import Protocol

from spikeviz.dashboard import sync


def _defined_ids(msg) -> set[str]:
    """Ids of the models a PATCH-DOC message sends whole (not by reference)."""
    found: set[str] = set()

    def walk(obj) -> None:
        if isinstance(obj, dict):
            if obj.get("type") == "object" and "id" in obj:
                found.add(obj["id"])
            for value in obj.values():
                walk(value)
        elif isinstance(obj, list):
            for value in obj:
                walk(value)

    walk(json.loads(msg.content_json))
    return found


def test_a_browser_change_does_not_mark_unsent_models_as_sent():
    sync.install()
    doc = Document()
    slider = Slider(start=0, end=1, value=0)
    column = Column(children=[slider])
    doc.add_root(column)
    doc.to_json()                             # what the page received when it loaded
    events = []
    doc.on_change(lambda event: events.append(event))
    added = Div(text="a plot added by a job")
    column.children = [slider, added]         # its message not written yet...
    doc.apply_json_patch({"events": [{"kind": "ModelChanged", "model": {"id": slider.id},
                                      "attr": "value", "new": 0.5}]})   # ...when the page moves the slider
    msg = Protocol().create("PATCH-DOC", events[:1])
    assert added.id in _defined_ids(msg), "the added model went out by reference only"
    assert slider.value == 0.5
