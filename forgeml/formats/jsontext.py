"""JSON from untrusted files, parsed only after its nesting depth is known to be small.

``json.loads`` recurses in C once per nesting level; with the recursion limit raised (torch and
others raise it) a file of a hundred thousand ``[`` overflows the C stack and kills the process
instead of raising. So the depth is measured first, by a scan over brackets and strings only."""

from __future__ import annotations

import json
import re

MAX_DEPTH = 64
_TOKENS = re.compile(rb'[\[\]{}]|"(?:[^"\\]|\\.)*"', re.S)


class TooDeep(ValueError):
    """The text nests deeper than any file forgeml reads legitimately does."""


def depth(raw: bytes) -> int:
    level = top = 0
    for m in _TOKENS.finditer(raw):
        c = m.group()[:1]
        if c in b"[{":
            level += 1
            if level > top:
                top = level
                if top > MAX_DEPTH:
                    return top
        elif c in b"]}":
            level -= 1
    return top


def loads(raw: bytes | str):
    """``json.loads`` for untrusted text; raises ``TooDeep`` (a ValueError) past ``MAX_DEPTH`` levels."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if depth(data) > MAX_DEPTH:
        raise TooDeep(f"JSON nested more than {MAX_DEPTH} levels deep")
    return json.loads(data)
