"""Formats both sides share: the home and device layout, published versions, atomic writes, the wire messages.

Nothing here imports another package of this repository, so a device and the coordinator can
both depend on it without depending on each other.
"""
