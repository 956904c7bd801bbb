"""`spikeviz sessions`: the bundled sessions of the catalog and the shipped checkpoints."""
from __future__ import annotations

import argparse
import json


def add_parser(sub) -> None:
    p = sub.add_parser("sessions", help="list the bundled sessions and shipped checkpoints")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data.catalog import models_dir, sessions, shipped_checkpoints

    found = sessions()
    models = [p.name for p in shipped_checkpoints()]
    if args.json:
        print(json.dumps({"sessions": [{"name": s.name, "domain": s.domain, "tick_ms": s.tick_ms,
                                        "units": s.units, "path": str(s.path)} for s in found],
                          "checkpoints": models}))
        return 0
    for s in found:
        print(f"{s.name:32s} {s.domain:9s} {s.units} units, tick {s.tick_ms:g} ms  ({s.description})")
    print(f"\ncheckpoints in {models_dir()}:")
    for name in models:
        print(f"  {name}")
    return 0
