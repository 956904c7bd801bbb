"""The README's Python snippets run as written."""
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def sections_with_code(heading: str) -> list[str]:
    text = README.read_text()
    start = text.index(f"## {heading}")
    end = text.find("\n## ", start + 1)
    return re.findall(r"```python\n(.*?)```", text[start:end if end > 0 else None], re.S)


@pytest.mark.parametrize("heading", ["Python API", "Use it from SpikeInterface / pynapple"])
def test_readme_snippets_run(heading):
    pytest.importorskip("spikeinterface")
    blocks = sections_with_code(heading)
    assert blocks, f"no python code under {heading!r}"
    for block in blocks:
        exec(compile(block, f"README.md ({heading})", "exec"), {})
