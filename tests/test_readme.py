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


def commands(text: str) -> list[list[str]]:
    """Every `spikeviz ...` command line in the text (`$ ` prompts and continuation lines joined)."""
    import shlex

    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [line.strip().removeprefix("$ ") for line in joined.splitlines()]
    lines += re.findall(r"`(spikeviz [^`]+)`", joined)   # inline commands
    return [shlex.split(line.split("#")[0])[1:] for line in lines
            if line.startswith("spikeviz ") and "..." not in line and "COMMAND" not in line]


def section(heading: str) -> str:
    text = README.read_text()
    start = text.index(f"## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.mark.parametrize("heading", ["Quick start", "Command line", "Your own Kilosort / NWB data"])
def test_documented_commands_parse(heading):
    from spikeviz.cli import build_parser

    found = commands(section(heading))
    assert len(found) >= (5 if heading != "Your own Kilosort / NWB data" else 4), found
    parser = build_parser()
    for argv in found:
        if "--init" in argv and "--init" not in subparser_help(parser, "train"):
            continue   # fine-tuning arrives with the generalist checkpoints
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"README ({heading}): `spikeviz {' '.join(argv)}` does not parse")


def subparser_help(parser, command: str) -> str:
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command].format_help()


def test_quick_start_comes_first_and_says_how_to_reach_the_cli():
    text = README.read_text()
    assert re.findall(r"(?m)^## .*", text)[0] == "## Quick start"
    quick = section("Quick start")
    assert "source .venv/bin/activate" in quick and ".venv/bin/spikeviz" in quick
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", quick):
        assert (README.parent / image).is_file(), image


def _slugs(text: str) -> set[str]:
    """GitHub's anchors of a Markdown text's headings."""
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-")
            for h in re.findall(r"(?m)^#+ (.*)", text)}


def test_links_to_headings_and_files_resolve():
    """Every link of README.md and docs/*.md reaches its file and, after a '#', its heading."""
    for doc in (README, *(README.parent / "docs").glob("*.md")):
        for target in re.findall(r"\]\(([^)]+)\)", doc.read_text()):
            if target.startswith("http"):
                continue
            path, _, anchor = target.partition("#")
            linked = doc.parent / path if path else doc
            assert linked.exists(), (doc.name, target)
            if anchor and linked.suffix == ".md":
                assert anchor in _slugs(linked.read_text()), (doc.name, target)


def test_results_table_sits_between_its_markers():
    text = README.read_text()
    assert text.count("<!-- results:start -->") == text.count("<!-- results:end -->") == 1
    inside = text.split("<!-- results:start -->")[1].split("<!-- results:end -->")[0]
    assert inside.strip().startswith("| kind | direction") and inside.count("\n|") >= 3
    assert "results:start" in section("Results: does the model beat the baselines?")


def test_the_quick_starts_evaluate_output_has_the_lines_evaluate_prints(tmp_path, capsys):
    """The Quick start shows `spikeviz evaluate`'s output: its lines, by label and in order, are
    the ones evaluate prints for a generalist today (on a short stretch here: the numbers differ)."""
    import spikeviz
    from spikeviz.cli import main
    from spikeviz.data.io.table import write_table

    def labels(text: str) -> list[str]:
        return [line.split()[0] for line in text.splitlines()[1:] if line.startswith("  ")]

    block = section("Quick start").split("$ spikeviz evaluate", 1)[1].split("\n$ ", 1)[0]
    shown = labels(block.split("\n", 2)[2])   # after the command's two lines
    short = tmp_path / "short.npz"   # 80 s: the GLMs fit on 40 s, the warm-up from 30 s
    write_table(spikeviz.load_session("invitro_210511001_bh").slice(0.0, 80.0), short)
    assert main(["evaluate", "--checkpoint", "generalist-focal", "--data", str(short),
                 "--seconds", "3"]) == 0
    assert shown == labels(capsys.readouterr().out)
