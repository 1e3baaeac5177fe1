"""Collapsing image results: one image per near-duplicate group, with the group's size.

A result's group is the result and the images at or above the duplicate threshold of it (found
with the ANN index, exact cosines): the best-ranked image of a group stands for it, as a group's
seed does in `duplicates`, and the images of its group are dropped from the results below it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

#: Candidates fetched for each result shown: room for 3 near-duplicates of each in the ranking.
FETCH_FACTOR = 4
#: Near-duplicates looked for around each shown image; a bigger group shows as this many.
GROUP_MAX = 100


def collapse(matches: list, images, k: int, threshold: float) -> list:
    """The first k of `matches` (best first, over `images`, a Collection) that are not near-
    duplicates of one before them, each with `group` = the size of its near-duplicate group."""
    if not matches:
        return []
    xq = images.vectors_of(np.array([m.hit.id for m in matches], np.int64))
    around = images.search(xq, GROUP_MAX)
    hidden, out = set(), []
    for m, near in zip(matches, around):
        if m.hit.id in hidden:
            continue
        group = {h.id for h in near if h.score >= threshold} | {m.hit.id}
        hidden |= group
        out.append(replace(m, group=len(group)))
        if len(out) == k:
            break
    return out
