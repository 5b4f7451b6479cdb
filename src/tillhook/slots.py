"""Sharing free delivery slots among endpoints, so that no endpoint starves the others."""

from __future__ import annotations

import heapq


def share(wanted: dict[str, int], budget: int, busy: dict[str, int] | None = None, first: int = 0) -> dict[str, int]:
    """Split `budget` slots over endpoints one at a time, each to the endpoint with the fewest
    attempts running (`busy`) so far, ties taken in turn from the `first`-th: no endpoint
    starves the others."""
    if sum(wanted.values()) <= budget:
        return dict(wanted)
    busy = busy or {}
    order = list(wanted)
    heap = [(busy.get(e, 0), (i - first) % len(order), e) for i, e in enumerate(order)]
    heapq.heapify(heap)
    given: dict[str, int] = {}
    while budget > 0 and heap:
        load, turn, endpoint_id = heapq.heappop(heap)
        given[endpoint_id] = given.get(endpoint_id, 0) + 1
        budget -= 1
        if given[endpoint_id] < wanted[endpoint_id]:
            heapq.heappush(heap, (load + 1, turn, endpoint_id))
    return given
