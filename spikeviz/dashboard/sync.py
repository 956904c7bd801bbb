"""Bokeh document sync: models the page has not yet received stay unsent when the page sends a change.

Bokeh (3.4 to 3.9 at least) marks every model of a document as received by the browser whenever
the browser sends a change: `Document.apply_json_patch` ends with
`flush_synced(lambda m: not deserializer.has_ref(m))`, and the deserializer knows every model of
the document. A plot added on the server whose message is still waiting to be written (Bokeh
writes a locked callback's changes after the lock is released, one await at a time) is then sent
by reference only, and BokehJS fails with "reference pNNNN isn't known": the plot never shows.
This happened on about half of the dashboard's cold first loads, where the page reports its plot
sizes and ranges while the first plots are being added.
"""
from __future__ import annotations

import functools

from bokeh.document import Document


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


def install() -> None:
    """Patch `Document.apply_json_patch` once per process."""
    if not getattr(Document.apply_json_patch, "keeps_unsent", False):
        Document.apply_json_patch = _keep_unsent(Document.apply_json_patch)
