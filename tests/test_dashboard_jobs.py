"""Jobs' results reach the page: one applied before the page reported it rendered, and the
page's later changes after a result that raised."""
from __future__ import annotations

import json
import re

import pytest

from .browser import browser_marks, chromium, record_errors, serve, wait_until


def withhold_document_ready(page) -> dict:
    """Route the page's websocket through the test and hold back the page's `document_ready`
    report, and all it sends after it, until `release()` is called: the page stays between its
    document pull and that report (on a busy machine, seconds)."""
    routed: dict = {"held": None, "frames": []}

    def route(ws) -> None:
        server = routed["server"] = ws.connect_to_server()

        def from_page(frame) -> None:
            if routed["held"] is not None:
                routed["held"].append(frame)
                return
            frames = routed["frames"]
            frames.append(frame)   # a Bokeh message: header, metadata, content, then its buffers
            if len(frames) < 3 + json.loads(frames[0]).get("num_buffers", 0):
                return
            message, routed["frames"] = frames, []
            if "document_ready" in str(message[2]):
                routed["held"] = message
            else:
                for f in message:
                    server.send(f)

        ws.on_message(from_page)

    def release() -> None:
        held, routed["held"] = routed["held"], None
        for frame in held:
            routed["server"].send(frame)

    page.route_web_socket(re.compile(r".*/ws$"), route)
    routed["release"] = release
    return routed


@browser_marks[0]
@browser_marks[1]
def test_a_result_applied_before_the_page_reports_it_rendered_reaches_it(tmp_path):
    release_file = tmp_path / "release"
    with chromium() as browser, serve("tests/robustness/job_app.py", env={"SV_RELEASE": str(release_file)},
                                         setup=False) as url:   # (no dashboard to warm)
        page = browser.new_page()
        errors, routed = record_errors(page), withhold_document_ready(page)
        page.goto(f"{url}/job_app", timeout=90_000)
        wait_until(page, lambda: routed["held"] is not None, 60, "the page's document_ready report")
        assert page.locator(".sv-job-waiting").count() == 1   # the page shows the pulled document
        release_file.touch()   # the job ends now, after the pull, before the report
        page.wait_for_timeout(1500)
        routed["release"]()
        wait_until(page, lambda: page.locator(".sv-job-done").count() == 1, 30, "the job's result")
        assert errors == []


def test_a_raising_change_leaves_the_document_unfrozen():
    # Bokeh's freeze stays on when its body raises: models added later were unknown to the
    # server and the browser's next change to them failed (UnknownReferenceError).
    from bokeh.document import Document
    from bokeh.models import Div

    from spikeviz.dashboard.jobs import held

    doc = Document()
    with pytest.raises(ValueError), held(doc):
        raise ValueError("a failing job result")
    div = Div(text="added later")
    doc.add_root(div)
    assert doc.get_model_by_id(div.id) is div


def test_a_job_ending_after_its_page_closed_tells_nobody():
    """A slow server finished an evaluation after its page had gone: the progress report reached
    the destroyed document, Bokeh raised in the server log ('DocumentCallbackManager' object has
    no attribute '_change_callbacks') and left its curdoc patch behind, so that every later
    curdoc() of the process failed."""
    import asyncio
    import weakref

    from bokeh.document import Document
    from bokeh.io import curdoc

    from spikeviz.dashboard.jobs import post

    class Session:   # what a server's session context is to its document
        pass

    def page() -> Document:
        doc = Document()
        doc._session_context = weakref.ref(context)          # as the server sets it
        return doc

    errors = []

    def posted(doc: Document, gone=lambda: False) -> int:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(lambda loop, ctx: errors.append(ctx))   # the server logs these
        try:
            post(loop, doc, lambda: None, gone)
            loop.run_until_complete(asyncio.sleep(0))
        finally:
            loop.close()
        return len(doc.callbacks.session_callbacks) if hasattr(doc, "_roots") else 0

    context = Session()
    assert posted(page()) == 1                                # a live page gets it
    destroyed = page()

    def listener(event) -> None:
        pass

    destroyed.on_change(listener)
    destroyed.destroy(listener)
    posted(destroyed)                                         # destroyed first: nothing raised
    assert errors == [] and curdoc() is not destroyed         # and no patch left behind
    assert posted(page(), gone=lambda: True) == 0             # closed first: nothing scheduled
