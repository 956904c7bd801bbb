"""Recordings in, binned matrices out: the Recording, file formats, binning, unit choice, the catalog and the on-disk store."""
