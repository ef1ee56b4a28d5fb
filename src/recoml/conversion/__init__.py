"""Converters from other formats (ROOT via uproot, TrackML CSV) into the event store."""
