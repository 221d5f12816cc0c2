"""How text another role wrote (model keys, descriptions, tags, band labels, source names) is shown,
on the terminal and in the report alike."""
from __future__ import annotations

import unicodedata

# control, format (zero-width, direction override) and line/paragraph separator characters
HIDDEN = ("Cc", "Cf", "Zl", "Zp")


def shown(text, lines: bool = False) -> str:
    """``text`` with each character that could move the cursor, rewrite a line or reorder what is
    read (an escape sequence, a zero-width or direction mark) written as its Python escape;
    newlines kept only in ``lines`` (a server message)."""
    return "".join(c if unicodedata.category(c) not in HIDDEN or (lines and c == "\n") else ascii(c)[1:-1]
                   for c in str(text))
