"""A stable text rendering of chat messages, for hashing only (never sent anywhere).

Rendered from the first message on, so a conversation's next turn extends the previous turn's
rendering and shares its leading blocks. Roles and names are part of the text: the same words as a
system prompt and as a user message are different prefixes to an engine too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

# ASCII unit and record separators: cannot be confused with message text.
_UNIT, _RECORD = "\x1f", "\x1e"


def render_chat_prompt(messages: Sequence[Mapping[str, Any]], limit: int | None = None) -> str:
    """The rendering, or its first ``limit`` characters: a scorer hashes a bounded prefix, so the
    messages past it are not rendered at all (a long conversation would cost a copy of all of it)."""
    parts: list[str] = []
    size = 0
    for m in messages:
        # (A parsed body's messages are dicts: the exact type test first, the ABC's isinstance is slow.)
        if type(m) is not dict and not isinstance(m, Mapping):
            continue
        part = f"{m.get('role', '')}{_UNIT}{m.get('name') or ''}{_UNIT}{_content(m.get('content'))}{_RECORD}"
        parts.append(part)
        size += len(part)
        if limit is not None and size >= limit:
            return "".join(parts)[:limit]
    return "".join(parts)


def _content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                out.append(str(part.get("text", "")))
            else:  # images, audio...: their JSON, so equal parts hash equally
                out.append(orjson.dumps(part, option=orjson.OPT_SORT_KEYS).decode())
        return "".join(out)
    return orjson.dumps(content, option=orjson.OPT_SORT_KEYS).decode()
