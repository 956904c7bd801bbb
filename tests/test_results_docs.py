"""The results in README.md and models/README.md are the ones in models/table.json, to the digit."""
import re
from pathlib import Path

import pytest

from spikeviz.evaluation.report import README_MARKERS, Table, replace_section
from spikeviz import SpikevizError

ROOT = Path(__file__).resolve().parent.parent


def section(text: str) -> str:
    start, end = (re.escape(m) for m in README_MARKERS)
    found = re.search(f"{start}\n(.*?){end}", text, flags=re.S)
    assert found, "no results section"
    return found.group(1)


@pytest.mark.parametrize("doc", ["README.md", "models/README.md"])
def test_results_sections_match_the_table(doc):
    table = Table.read(ROOT / "models" / "table.json")
    assert section((ROOT / doc).read_text()) == table.summary_markdown()


def test_every_shipped_checkpoint_is_in_the_table():
    table = Table.read(ROOT / "models" / "table.json")
    shipped = {p.name for p in (ROOT / "models").rglob("*.safetensors")
               if not p.name.endswith(".state.safetensors")}
    assert shipped == {r["checkpoint"] for r in table.rows}


def test_replace_section_keeps_the_rest():
    text = f"intro\n{README_MARKERS[0]}\nold\n{README_MARKERS[1]}\noutro\n"
    assert replace_section(text, "new\n") == f"intro\n{README_MARKERS[0]}\nnew\n{README_MARKERS[1]}\noutro\n"
    with pytest.raises(SpikevizError, match="no <!-- results:start -->"):
        replace_section("no markers here", "new\n")
