"""`spikeviz inspect`: units, spikes, duration, rates and 1-ms density of a recording."""
from __future__ import annotations

import argparse
import json

import numpy as np

from ..data.binning import bin_index, n_bins_of
from ..data.recording import Recording
from . import add_data_options, load_from_args


def add_parser(sub) -> None:
    p = sub.add_parser("inspect", help="summarise a recording",
                       description="Summarise a recording: units, spikes, duration, rates, density.")
    p.add_argument("data", nargs="?", help="a file or Kilosort/phy folder")
    add_data_options(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(run=run)


def summary(recording: Recording) -> dict:
    """The figures `inspect` prints; density_1ms is the fraction of occupied (1-ms bin, unit) cells."""
    rates = recording.rates_hz
    n_bins = n_bins_of(recording.duration_s, 1.0)
    occupied = sum(np.unique(bin_index(t, 0.0, 1.0)).size for t in recording.spike_times)
    src = recording.source
    return {
        "name": recording.name,
        "format": src.get("format"),
        "path": src.get("path"),
        "tick_ms": src.get("tick_ms"),
        "sample_rate": src.get("sample_rate"),
        "units": recording.n_units,
        "spikes": recording.n_spikes,
        "duration_s": recording.duration_s,
        "mean_rate_hz": float(rates.mean()),
        "median_rate_hz": float(np.median(rates)),
        "density_1ms": occupied / (n_bins * recording.n_units),
        "rate_quantiles_hz": {q: float(np.quantile(rates, float(q))) for q in
                              ("0.0", "0.1", "0.25", "0.5", "0.75", "0.9", "1.0")},
        "silent_units": int((recording.spike_counts == 0).sum()),
        "unit_columns": sorted(recording.unit_info),
    }


def run(args: argparse.Namespace) -> int:
    recording = load_from_args(args)
    s = summary(recording)
    if args.json:
        print(json.dumps(s))
        return 0
    q = s["rate_quantiles_hz"]
    time_base = f"tick {s['tick_ms']} ms" if s["tick_ms"] else (
        f"{s['sample_rate']:g} Hz" if s["sample_rate"] else "times in s")
    print(f"{s['name']}  ({s['format']}, {time_base})")
    print(f"  units         {s['units']} ({s['silent_units']} silent)")
    print(f"  spikes        {s['spikes']:,}")
    print(f"  duration      {s['duration_s']:,.3f} s")
    print(f"  rate          mean {s['mean_rate_hz']:.2f} Hz, median {s['median_rate_hz']:.2f} Hz")
    print(f"  rate range    min {q['0.0']:.3f}, 10% {q['0.1']:.3f}, 90% {q['0.9']:.2f}, "
          f"max {q['1.0']:.2f} Hz")
    print(f"  1-ms density  {100 * s['density_1ms']:.3f} % of (bin, unit) cells")
    if s["unit_columns"]:
        print(f"  unit columns  {', '.join(s['unit_columns'])}")
    return 0
