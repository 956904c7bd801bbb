"""The `spikeviz` command line: one module per subcommand, errors as one line and exit status 2."""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from pathlib import Path
from typing import Sequence

from ..errors import DataWarning, SpikevizError
from ..data.io import FORMATS

_python_showwarning = warnings.showwarning

# Each module defines add_parser(subparsers) and run(args) -> int.
COMMANDS = ("sessions", "inspect", "train", "evaluate", "table", "generate", "grid")


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows every option's default (except the ones that mean 'not given')."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" not in text and action.option_strings and not any(
                action.default is v for v in (None, False, argparse.SUPPRESS)):   # 0 is shown
            text += " (default: %(default)s)"
        return text


class Parser(argparse.ArgumentParser):
    """Every subcommand's parser: defaults shown in --help."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def baseline_list(text: str) -> tuple[str, ...]:
    """--baselines: comma-separated names of spikeviz.models.baselines.PREDICTORS, or "all"
    (ALL_BASELINES)."""
    from ..models.baselines import ALL_BASELINES, PREDICTORS

    if text.strip() == "all":
        return ALL_BASELINES
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PREDICTORS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown baselines {unknown or [text]}: use a "
                                         f"comma-separated list of {', '.join(PREDICTORS)}")
    return names


def add_baselines(p: argparse.ArgumentParser, scored: str = "beside the model") -> None:
    """The --baselines option of evaluate, table and grid."""
    from ..models.baselines import ALL_BASELINES, FITTED_MODELS

    p.add_argument("--baselines", type=baseline_list, default="all",
                   help=f"baselines to score {scored}, comma-separated, from "
                        f"{', '.join(ALL_BASELINES)} (all: these), or the population models "
                        f"fitted on the recording ({', '.join(FITTED_MODELS)})")


def add_without_glm(p: argparse.ArgumentParser) -> None:
    """The --without-glm option of evaluate and generate."""
    p.add_argument("--without-glm", action="store_true",
                   help="a generalist alone, its own warm-up guard only; by default its "
                        "teacher-forced predictions are blended with the coupled GLM fitted on "
                        "the data's train split, weighed on the warm-up (free runs never are)")


def split_text() -> str:
    """The chronological split in words, from the one place that defines it."""
    from ..data.binning import SPLIT_FRACTIONS

    return ", ".join(f"{name} {100 * a:g}-{100 * b:g} %" for name, (a, b) in
                     sorted(SPLIT_FRACTIONS.items(), key=lambda kv: kv[1]))


def add_data_options(parser: argparse.ArgumentParser, session: bool = True) -> None:
    """The options that say which recording to read (shared by every command that reads one)."""
    if session:
        parser.add_argument("--session", help="a bundled session by name (see `spikeviz sessions`)")
    parser.add_argument("--format", choices=FORMATS,
                        help="file format (default: detected from content and extension)")
    parser.add_argument("--tick-ms", type=float, help="tick length in ms (asdf files without one)")
    parser.add_argument("--sample-rate", type=float, help="sampling rate in Hz (phy, tables, MaxWell)")
    parser.add_argument("--include-noise", action="store_true",
                        help="keep clusters labelled noise (phy folders)")
    parser.add_argument("--min-rate", type=float, metavar="HZ",
                        help="leave out clusters firing below HZ (phy folders; default: 0.1 in a "
                             "folder without cluster labels, else 0)")


def load_from_args(args: argparse.Namespace, path: str | None = None):
    """The Recording named by --session or by a path with the load options."""
    from ..data.catalog import open_recording, session

    path = path if path is not None else getattr(args, "data", None)
    if getattr(args, "session", None):
        if path:
            raise SpikevizError("give either a path or --session, not both")
        given = [f"--{k.replace('_', '-')}" for k in ("format", "tick_ms", "sample_rate",
                                                       "min_rate") if getattr(args, k, None) is not None]
        if given:
            raise SpikevizError(f"{', '.join(given)} only apply to a path: bundled sessions "
                                f"come with their format and tick")
        return session(args.session).load()
    if not path:
        raise SpikevizError("no data: give a recording's path or a bundled --session NAME")
    return open_recording(path, format=args.format, tick_ms=args.tick_ms,
                          sample_rate=args.sample_rate, include_noise=args.include_noise,
                          min_rate_hz=args.min_rate)


def check_writable(out: Path) -> None:
    """Refuse an output whose folder cannot be created or written, before any work is done."""
    import os

    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpikevizError(f"cannot create its folder ({exc.strerror or exc})", out) from exc
    if not os.access(out.parent, os.W_OK | os.X_OK):
        raise SpikevizError(f"its folder {out.parent} is not writable", out)


def check_not_input(out: Path, *inputs: str | Path | None) -> None:
    """Refuse an output that is one of the command's own inputs: --force replaces an output,
    never the recording or checkpoint the command reads."""
    for given in inputs:
        if given and Path(given).exists() and out.exists() and out.resolve() == Path(given).resolve():
            raise SpikevizError("is also this command's input: give another output path", out)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="spikeviz", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").add_parser(sub)
    return parser


def note(text: str) -> None:
    """One line on stderr: something the command changed or left out to fit the data, and the
    option that decides it."""
    print(f"spikeviz: note: {text}", file=sys.stderr, flush=True)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # A reader's DataWarning is one line, like an error; other warnings keep Python's form.
    if issubclass(category, DataWarning):
        print(f"spikeviz: warning: {message}", file=sys.stderr, flush=True)
    else:
        _python_showwarning(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("always", DataWarning)
        warnings.showwarning = _show_warning
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args) or 0)
    except (SpikevizError, OSError) as exc:
        if args.debug:
            raise
        if isinstance(exc, OSError) and not isinstance(exc, SpikevizError):
            exc = SpikevizError(exc.strerror or str(exc), exc.filename)
        print(f"spikeviz: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("spikeviz: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
