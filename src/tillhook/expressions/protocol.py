"""The frames between the daemon and its sandbox process, over the child's stdin and stdout:
a 4-byte big-endian length, then that many bytes.

- The child's first frame: `{"ready": true, "baseline_bytes": N}` once it can evaluate.
- A request: a 4-byte length, that much JSON `{"kind": "filter" | "transform", "source": "...",
  "sizes": [N, ...]}`, then the stored events' bytes back to back, one size each: they reach
  the child as they are stored, with no JSON around them to escape and unescape.
- The reply to a filter: `{"results": [true | false | "<error in words>", ...]}`, one per event.
- The reply to a transform: `=` and then the body's bytes, exactly as they are to be sent.
- Any request may instead get `{"error": "<words>", "bound": null | "memory" | "output",
  "size": N}`; after a `memory` one the child exits, as its heap cannot be trusted."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import orjson

HEADER = struct.Struct(">I")
MAX_REASON_CHARS = 300  # an error in words, as the child sends it
BODY_PREFIX = b"="


def frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


def request(kind: str, source: str, events: Sequence[bytes]) -> bytes:
    meta = orjson.dumps({"kind": kind, "source": source, "sizes": [len(event) for event in events]})
    return frame(b"".join([HEADER.pack(len(meta)), meta, *events]))


def parse_request(payload: bytes) -> tuple[str, str, list[bytes]]:
    """Kind, source and events of a request's payload."""
    (length,) = HEADER.unpack_from(payload)
    start = HEADER.size + length
    meta = orjson.loads(payload[HEADER.size : start])
    events = []
    for size in meta["sizes"]:
        events.append(payload[start : start + size])
        start += size
    return meta["kind"], meta["source"], events
