"""The three upstream races sync.py works around: each shown on unpatched Bokeh or Panel (those tests
fail once upstream fixes it: drop the shim then), and each fixed by the shim."""
from __future__ import annotations

import asyncio
import json
import threading

import panel.io.document as panel_document
from bokeh.document import Document
from bokeh.document.events import ModelChangedEvent
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


def _added_during_a_browser_change(apply_json_patch) -> tuple[Div, list]:
    """A Div added on the server, its message not yet written, when the page moves a slider; the
    document's change events."""
    doc = Document()
    slider = Slider(start=0, end=1, value=0)
    column = Column(children=[slider])
    doc.add_root(column)
    doc.to_json()                             # what the page received when it loaded
    events = []
    doc.on_change(lambda event: events.append(event))
    added = Div(text="a plot added by a job")
    column.children = [slider, added]         # its message not written yet...
    apply_json_patch(doc, {"events": [{"kind": "ModelChanged", "model": {"id": slider.id},
                                       "attr": "value", "new": 0.5}]})   # ...when the page moves the slider
    assert slider.value == 0.5
    return added, events


def test_upstream_bokeh_sends_a_model_added_during_a_browser_change_by_reference_only():
    """docs/upstream.md, Bokeh: fails once Bokeh keeps unsent models unsent (drop _keep_unsent)."""
    upstream = getattr(Document.apply_json_patch, "__wrapped__", Document.apply_json_patch)
    added, events = _added_during_a_browser_change(upstream)
    assert added.id not in _defined_ids(Protocol().create("PATCH-DOC", events[:1]))
    assert sync.BOKEH_AFFECTED, "the installed Bokeh has the race: extend BOKEH_AFFECTED"


def test_a_browser_change_does_not_mark_unsent_models_as_sent():
    sync.install()
    added, events = _added_during_a_browser_change(Document.apply_json_patch)
    msg = Protocol().create("PATCH-DOC", events[:1])
    assert added.id in _defined_ids(msg), "the added model went out by reference only"


def _held_change(drain) -> tuple[ModelChangedEvent, list, list]:
    """A slider moved in a hold that ends after the page pulled the document, before it reported
    it rendered (Panel counts the session unconnected): what Panel dispatches now, what it keeps
    for the page's report."""
    doc = Document()
    slider = Slider(start=0, end=1, value=0)
    doc.add_root(slider)
    sync._PULLED.add(doc)   # what ServerSession._handle_pull marks, once patched
    doc.hold("combine")
    slider.value = 0.5
    (held,) = doc.callbacks._held_events
    dispatched = drain(doc, threading.Lock())
    return held, dispatched, panel_document._UNCONNECTED_EVENTS.pop(doc, [])


def test_upstream_panel_drops_a_change_held_before_the_page_reports_ready():
    """docs/upstream.md, Panel: fails once Panel keeps (or sends) such changes (drop
    _kept_once_pulled and _marked_pulled)."""
    upstream = getattr(panel_document._drain_unconnected_events, "__wrapped__",
                       panel_document._drain_unconnected_events)
    held, dispatched, kept = _held_change(upstream)
    assert held not in dispatched and held not in kept, "Panel no longer drops the change"
    assert sync.PANEL_AFFECTED, "the installed Panel has the race: extend PANEL_AFFECTED"


def test_a_change_held_after_the_pull_is_kept_for_the_page():
    sync.install()
    held, dispatched, kept = _held_change(panel_document._drain_unconnected_events)
    assert kept == [held] and held not in dispatched


class _Socket:
    """A page's websocket, of a kind Panel writes to through its `extra_socket_handlers`."""

    def __init__(self):
        self.sent: list = []


class _Connection:
    def __init__(self):
        self._socket = _Socket()


def _queued_while_writing(dispatch) -> list:
    """What the page is sent when message "b" is queued (as Panel's schedule_write_events queues
    it, with a task of its own) while a dispatch task awaits its write of message "a"."""
    async def run() -> list:
        doc, conn = Document(), _Connection()
        written = asyncio.get_running_loop().create_future()

        def write(conn, msg=None) -> list:
            conn._socket.sent.append(msg)
            return [written] if msg == "a" else []

        panel_document.extra_socket_handlers[_Socket] = write
        try:
            panel_document._WRITE_BLOCK[doc] = True
            panel_document._WRITE_MSGS[doc] = {conn: ["a"]}
            first = asyncio.ensure_future(dispatch(doc))
            await asyncio.sleep(0)   # "a" sent, its write awaited
            panel_document._WRITE_BLOCK[doc] = True
            panel_document._WRITE_MSGS.setdefault(doc, {}).setdefault(conn, []).append("b")
            written.set_result(None)
            await first              # the first task ends before "b"'s own task starts
            await dispatch(doc)
            await asyncio.gather(*panel_document._write_tasks.get(doc, []))
            return conn._socket.sent
        finally:
            del panel_document.extra_socket_handlers[_Socket]

    return asyncio.run(run())


def test_upstream_panel_leaves_a_change_queued_during_a_write_unsent():
    """docs/upstream.md, Panel: fails once Panel writes such a change (drop _flushes_queued)."""
    upstream = getattr(panel_document._dispatch_msgs, "__wrapped__", panel_document._dispatch_msgs)
    assert _queued_while_writing(upstream) == ["a"], "Panel now sends the queued change"
    assert sync.PANEL_AFFECTED, "the installed Panel has the race: extend PANEL_AFFECTED"


def test_a_change_queued_during_a_write_is_sent():
    sync.install()
    assert _queued_while_writing(panel_document._dispatch_msgs) == ["a", "b"]
