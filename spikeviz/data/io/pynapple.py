"""Bridges to pynapple: `TsGroup` in and out, unit metadata carried both ways."""
from __future__ import annotations

import numpy as np

from ...errors import SpikevizError
from ..recording import Recording
from .spikeinterface import require


def to_tsgroup(recording: Recording):
    """`recording` as a pynapple TsGroup over [0, duration_s], unit extras as metadata.

    pynapple keys are integers: non-integer unit ids go to the `unit_id` metadata column.
    """
    nap = require("pynapple")
    ids = recording.unit_ids
    integer = ids.dtype.kind in "iu"
    keys = ids.tolist() if integer else list(range(len(ids)))
    metadata = {k: np.asarray(v) for k, v in recording.unit_info.items() if k != "rate"}
    if not integer:
        metadata["unit_id"] = ids.astype(str)
    support = nap.IntervalSet(start=0.0, end=recording.duration_s)
    return nap.TsGroup({k: nap.Ts(t=t, time_support=support) for k, t in zip(keys, recording.spike_times)},
                       time_support=support, metadata=metadata or None)


def from_tsgroup(tsgroup, name: str = "tsgroup") -> Recording:
    """A Recording from a pynapple TsGroup; its time support's end is the duration."""
    require("pynapple")
    keys = list(tsgroup.keys())
    if not keys:
        raise SpikevizError("the TsGroup has no units")
    trains = tuple(np.asarray(tsgroup[k].t, dtype=np.float64) for k in keys)
    if any(t.size and t[0] < 0 for t in trains):
        raise SpikevizError("the TsGroup has negative spike times: shift it to start at 0 first")
    ends = np.asarray(tsgroup.time_support.end, dtype=np.float64)
    last = max((t[-1] for t in trains if t.size), default=0.0)
    duration = float(max(ends.max() if ends.size else 0.0, last))
    info = {}
    for column in tsgroup.metadata_columns:
        if column != "rate":
            info[column] = np.asarray(tsgroup.metadata[column])
    ids = np.array(keys)
    if "unit_id" in info:
        ids = info.pop("unit_id")
    return Recording(name, ids, trains, duration, {"format": "pynapple"}, info)
