"""Bokeh document sync: what the page has not received is sent, whatever else the page is doing.

Three races between Bokeh's server session and Panel lost changes on their way to the page; each
is fixed by a patch installed once per process.

Models added, not yet sent, when the browser sends a change. Bokeh (3.4 to 3.9 at least) marks
every model of a document as received by the browser whenever the browser sends a change:
`Document.apply_json_patch` ends with `flush_synced(lambda m: not deserializer.has_ref(m))`, and
the deserializer knows every model of the document. A plot added on the server whose message is
still waiting to be written (Bokeh writes a locked callback's changes after the lock is released,
one await at a time) is then sent by reference only, and BokehJS fails with "reference pNNNN isn't
known": the plot never shows. This happened on about half of the dashboard's cold first loads,
where the page reports its plot sizes and ranges while the first plots are being added.

Changes made after the page pulled its document, before it reported it rendered. Panel (1.9.4)
counts a session as connected only once the browser reports `document_ready`, after it has pulled
and rendered the whole document, and until then `hold()` drops the model changes it collected, on
the premise that a document pull is still to come. Every Panel layout update runs in a hold. On a
busy machine the report came seconds after the pull, and a result applied in between never
reached the page: a raster stayed hidden under its finished evaluation (1 run in 5 of the
eight-session test). Once the document is pulled, those changes are kept with the events Panel
already sends when the page reports (in order, from a locked callback). Counting the session as
connected from the pull instead made HoloViews apply range updates outside the document lock.

Changes scheduled while Panel writes earlier ones. Panel (1.9.4) writes a held change it cannot
write at once from a task (`_dispatch_msgs`), and a change made while that task awaits its write is
queued behind it (`_WRITE_MSGS`) with a task of its own. When the first task finishes it clears the
write block (`_WRITE_BLOCK`) whatever was queued meanwhile, and the second task, finding no block,
returns without writing: the change waits for the next one. A refused path or upload whose job
failed within ~50 ms of its progress message left the page showing "loading ..." and no error
(the dashboard's random walk: 3 of 6 seeds of 60 steps); the next action sent it. The patched task
writes what is still queued when it ends.

No upstream report was found for any (Panel's #8692, fixed in 1.9.4, is the neighbouring
case of events held before any pull): all three are written up in docs/upstream.md. Each shim
applies only to the versions known affected (BOKEH_AFFECTED, PANEL_AFFECTED), and
tests/test_dashboard_sync.py shows each race on unpatched Bokeh or Panel: that test fails once
upstream fixes it, and the shim goes.
"""
from __future__ import annotations

import functools
import weakref

import bokeh
import panel
import panel.io.document as panel_document
from bokeh.document import Document
from bokeh.document.events import DocumentPatchedEvent, MessageSentEvent
from bokeh.server.session import ServerSession
from packaging.version import Version

# The versions seen affected (the newest installed when each was last checked).
BOKEH_AFFECTED = Version("3.4") <= Version(bokeh.__version__) <= Version("3.9.2")
PANEL_AFFECTED = Version(panel.__version__) <= Version("1.9.4")

_PULLED: weakref.WeakSet[Document] = weakref.WeakSet()   # documents a page has received


def _keep_unsent(apply_json_patch):
    @functools.wraps(apply_json_patch)
    def apply(self: Document, patch_json, *, setter=None) -> None:
        # The browser cannot refer to a model it was never sent: those still in the document
        # stay new.
        unsent = set(self.models._new_models)
        apply_json_patch(self, patch_json, setter=setter)
        self.models._new_models |= {m for m in unsent if m.id in self.models}

    apply.keeps_unsent = True
    return apply


def _marked_pulled(handle_pull):
    @functools.wraps(handle_pull)
    def pull(self: ServerSession, message, connection):
        reply = handle_pull(self, message, connection)   # the document as it is now
        _PULLED.add(self.document)
        return reply

    pull.marks_pulled = True
    return pull


def _kept_once_pulled(drain):
    @functools.wraps(drain)
    def drained(doc: Document, lock) -> list:
        if doc in _PULLED:
            with lock:
                held = list(doc.callbacks._held_events or [])
                dropped = [isinstance(e, DocumentPatchedEvent) and not isinstance(e, MessageSentEvent) for e in held]
                doc.callbacks._held_events = [e for e, d in zip(held, dropped) if not d]
                panel_document._UNCONNECTED_EVENTS.setdefault(doc, []).extend(e for e, d in zip(held, dropped) if d)
        return drain(doc, lock)

    drained.keeps_pulled = True
    return drained


def _flushes_queued(dispatch):
    @functools.wraps(dispatch)
    async def dispatched(doc: Document) -> None:
        await dispatch(doc)
        if doc not in panel_document._WRITE_BLOCK and panel_document._WRITE_MSGS.get(doc):
            panel_document._WRITE_BLOCK[doc] = True
            panel_document._dispatch_write_task(doc, panel_document._dispatch_msgs, doc)

    dispatched.flushes_queued = True
    return dispatched


def install() -> None:
    """Patch Bokeh's document sync and Panel's hold once per process, where affected."""
    if BOKEH_AFFECTED and not getattr(Document.apply_json_patch, "keeps_unsent", False):
        Document.apply_json_patch = _keep_unsent(Document.apply_json_patch)
    if PANEL_AFFECTED and not getattr(ServerSession._handle_pull, "marks_pulled", False):
        ServerSession._handle_pull = _marked_pulled(ServerSession._handle_pull)
    if PANEL_AFFECTED and not getattr(panel_document._drain_unconnected_events, "keeps_pulled", False):
        panel_document._drain_unconnected_events = _kept_once_pulled(panel_document._drain_unconnected_events)
    if PANEL_AFFECTED and not getattr(panel_document._dispatch_msgs, "flushes_queued", False):
        panel_document._dispatch_msgs = _flushes_queued(panel_document._dispatch_msgs)
