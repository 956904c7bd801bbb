"""`--help` tells the truth: every option has help and shows its default, and every option that an
error message suggests exists in the command where that message can appear."""
import argparse
import ast
import re
from pathlib import Path

import pytest

from spikeviz.cli import COMMANDS, build_parser

PACKAGE = Path(__file__).resolve().parents[1] / "spikeviz"
DATA_COMMANDS = ("inspect", "train", "evaluate", "generate")
# Where a library module's messages surface: the commands that call it.
SURFACES = {
    "cli/__init__.py": DATA_COMMANDS, "data/catalog.py": DATA_COMMANDS, "data/io/": DATA_COMMANDS,
    "data/binning.py": ("train",), "training/loop.py": ("train",),
    "_atomic.py": ("train", "generate"), "evaluation/evaluate.py": ("table",),
    "evaluation/report.py": ("table",), "evaluation/grid.py": ("grid",),
    "training/workers.py": ("grid",),
}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_option_has_help_and_shows_its_default(command):
    parser = subparsers()[command]
    text = " ".join(parser.format_help().split())
    assert "%%" not in text and "(default: None)" not in text
    for action in parser._actions:
        assert action.help, f"{command} {action.option_strings or action.dest} has no help"
        if action.option_strings and not any(action.default is v for v in
                                             (None, False, argparse.SUPPRESS)):
            assert f"(default: {action.default})" in text, (command, action.option_strings)


def suggested_options() -> list[tuple[str, int, str]]:
    """(module, line, option) for every --option named in a string of a `raise` statement."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = path.relative_to(PACKAGE).as_posix()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise):
                for const in ast.walk(node):
                    if isinstance(const, ast.Constant) and isinstance(const.value, str):
                        found += [(module, const.lineno, opt) for opt in
                                  re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", const.value)]
    return found


def commands_for(module: str) -> tuple[str, ...]:
    name = Path(module).stem
    if module.startswith("cli/") and name in COMMANDS:
        return (name,)
    keys = [k for k in SURFACES if module == k or (k.endswith("/") and module.startswith(k))]
    assert keys, f"{module} raises a message naming an option: say in SURFACES where it surfaces"
    return SURFACES[keys[0]]


def test_the_walk_finds_the_messages():
    found = {(m, o) for m, _, o in suggested_options()}
    assert {("data/binning.py", "--pad"), ("data/catalog.py", "--session"),
            ("data/io/asdf.py", "--tick-ms"),
            ("cli/train.py", "--force")} <= found


@pytest.mark.parametrize("module, line, option", suggested_options())
def test_suggested_options_exist(module, line, option):
    parsers = subparsers()
    for command in commands_for(module):
        assert option in parsers[command].format_help(), \
            f"{module}:{line} suggests {option}, which `spikeviz {command}` does not have"
