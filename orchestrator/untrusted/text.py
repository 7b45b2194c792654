"""Text a model or an agent wrote, made safe for the places Cadre puts it.

A model's summary ends up in a commit message (where a NUL would cut Cadre's own trailers off), in
logs, and on an operator's terminal (where an escape sequence can write the clipboard, retitle the
window, plant a hyperlink or clear the screen). `clean_text` keeps printable text, newlines and tabs
and drops everything else: NUL and other C0/C1 controls, DEL, complete escape sequences (CSI, OSC,
DCS, APC, PM, SOS and two-byte ESC sequences), lone carriage returns, and the bidirectional overrides
that make a terminal show text in another order than it is.
"""

from __future__ import annotations

import re

# ESC-introduced sequences, whole: CSI (ESC [ ... final), OSC/DCS/SOS/PM/APC strings (ended by BEL or ST,
# or unterminated to the end of the text), then any other two-byte ESC sequence. Their 8-bit forms (C1
# introducers) are controls and go with the rest below.
_ESCAPE_SEQUENCES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_].*?(?:\x07|\x1b\\|\x9c|\Z)"
    r"|\x1b[ -/]*[0-~]?",
    re.S,
)
_EIGHT_BIT_STRINGS = re.compile(r"[\x90\x98\x9d\x9e\x9f].*?(?:\x07|\x9c|\x1b\\|\Z)|\x9b[0-?]*[ -/]*[@-~]?", re.S)
# Controls other than tab and newline, DEL, C1 controls, and the bidi marks, embeddings, overrides and isolates.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(text: str) -> str:
    """`text` with every control character and escape sequence removed (tabs and newlines kept; CRLF
    and lone CR become newlines). Safe in a commit message, a log line and on a terminal."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _ESCAPE_SEQUENCES.sub("", text)
    text = _EIGHT_BIT_STRINGS.sub("", text)
    return _CONTROLS.sub("", text)


def one_line(text: str, limit: int = 200) -> str:
    """`text` cleaned and folded to one line of at most `limit` characters (for titles and reasons)."""
    folded = " ".join(clean_text(text).split())
    return folded if len(folded) <= limit else folded[: limit - 1] + "…"
