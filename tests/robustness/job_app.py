"""`panel serve` this for the job-result test: a box whose class a background job sets once the
file named by SV_RELEASE exists (the test creates it after the page has pulled its document)."""
import os
import time
from pathlib import Path

import panel as pn

from spikeviz.dashboard.jobs import Jobs


def wait_for_release(progress) -> str:
    release = Path(os.environ["SV_RELEASE"])
    while not release.exists():
        time.sleep(0.05)
    return "sv-job-done"


box = pn.Column(pn.pane.Str("a job runs"), css_classes=["sv-job-waiting"], width=300, height=60)
Jobs(lambda **kw: None).submit("load", wait_for_release,
                               lambda result: setattr(box, "css_classes", [result]), lambda exc: None)
box.servable()
