"""Telling which encoding a text file that is not UTF-8 is in, so the error can name it.

UTF-16 and UTF-32 files (what Windows tools often write) start with a byte-order mark, or,
without one, hold mostly-ASCII text as every second (or every fourth) byte NUL. Pure ASCII
UTF-16 even decodes as "valid" UTF-8 full of NULs, so it is caught before decoding.
"""

from __future__ import annotations

BYTE_ORDER_MARKS = (  # the UTF-32 marks first: UTF-32 LE's starts with UTF-16 LE's
    (b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
    (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE"),
)
SAMPLE_BYTES = 4096


def wide_encoding(raw: bytes) -> str | None:
    """"UTF-16LE", "UTF-16BE", "UTF-32LE" or "UTF-32BE" when ``raw`` looks like that, else None."""
    for mark, name in BYTE_ORDER_MARKS:
        if raw.startswith(mark):
            return name
    sample = raw[:SAMPLE_BYTES]
    if len(sample) < 4 or sample.count(0) < len(sample) // 3:
        return None
    for width in (4, 2):
        lanes = [sample[lane::width] for lane in range(width)]
        nul_lanes = [lane.count(0) > 0.9 * len(lane) for lane in lanes]
        if sum(nul_lanes) == width - 1:                 # all lanes but one are NUL: one text lane
            order = "LE" if not nul_lanes[0] else "BE"
            return f"UTF-{8 * width}{order}"
    return None


def not_utf8_hint(path, raw: bytes) -> str | None:
    """How to convert a UTF-16 or UTF-32 file to UTF-8 (None when ``raw`` is neither)."""
    encoding = wide_encoding(raw)
    if encoding is None:
        return None
    return (f"{path} looks like {encoding} text, not UTF-8: convert it first, e.g. "
            f"iconv -f {encoding} -t UTF-8 {path} > utf8.txt")
