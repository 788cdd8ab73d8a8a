"""The bodies SageMaker's TensorFlow Serving container rewrites, as it rewrites them, in time
linear in the body and a piece's worth of memory: ``text/csv`` into the TF Serving REST request
(``csv_json`` quickly for numbers, ``csv_fields`` a field at a time for text), and whitespace
replaced a piece at a time (``sub_spaces``, and ``unsub_offset`` to map a byte of the result
back), which JSON lines use too.  Imports no TensorFlow."""

from __future__ import annotations

import csv
import io
import json
import re

from ..errors import BadRequest
from .dtypes import MAX_STRINGS
from .jsonio import MAX_CONTAINERS

#: no \r, \v or \f: csv reads a lone \r as a line break (JSON as a space: '1,\r2' was [[1,2]]
#: where csv gives [[1,""],2]), and \v, \f as part of a field
_NUMERIC_CSV = re.compile(rb"[0-9eE.+\-, \t\n]*")
#: a run of whitespace holding a line break and anything more (a bare \n is left as it is):
#: the lookbehind tries each run once from its start, where \s*\n\s* tried it from each of
#: its bytes (quadratic: 64 KiB of spaces between two numbers took 4 s)
_LINE_BREAKS = re.compile(rb"(?<!\s)(?:[ \t\r\x0b\x0c]+\n\s*|\n\s+)")
_NOT_SPACE = re.compile(rb"\S")
_PIECE = 1 << 16
_LINE_WITHOUT_COMMA = re.compile(rb"(?:^|\n)[^,\n]*(?:\n|$)")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")  # ASCII digits: JSON's


def csv_json(body: bytes) -> bytes:
    """A ``text/csv`` body as the TF Serving REST request the container sends, quickly: a body
    of digits, signs, dots, exponents and commas is rewritten as it is (``csv_fields`` then
    reads it again should the JSON parser find a field that is no JSON number, ``01``)."""
    text = csv_text(body)
    if _NUMERIC_CSV.fullmatch(text) and not _mixed_widths(text):
        if b"," not in text:  # one field a line: each instance a scalar
            return b'{"instances":[' + text.replace(b"\n", b",") + b"]}"
        return b'{"instances":[[' + text.replace(b"\n", b"],[") + b"]]}"
    return csv_fields(body)


def sub_spaces(pattern: re.Pattern[bytes], repl: bytes, text: bytes) -> bytes:
    """``pattern.sub(repl, text)`` for a pattern matching whitespace only, a piece of
    ``_PIECE`` bytes at a time, each cut before a byte that is not whitespace (so no match
    spans two): ``sub`` holds an object per match until it joins them (55x the body for
    8 MiB of ``1,1\\n``), here never more than a piece's worth."""
    out, start = [], 0
    while start < len(text):
        cut = _NOT_SPACE.search(text, start + _PIECE)
        end = len(text) if cut is None else cut.start()
        out.append(pattern.sub(repl, text[start:end]))
        start = end
    return b"".join(out)


def unsub_offset(pattern: re.Pattern[bytes], text: bytes, at: int) -> int:
    """The byte of ``text`` that byte ``at`` of ``sub_spaces(pattern, b",", text)`` came
    from (a comma: where the whitespace it replaced starts), found a piece at a time as that
    rewrote it: linear time, a piece's worth of memory."""
    start = done = 0  # done: the rewritten bytes of text[:start]
    while start < len(text):
        cut = _NOT_SPACE.search(text, start + _PIECE)
        end = len(text) if cut is None else cut.start()
        n = len(pattern.sub(b",", text[start:end]))
        if done + n > at:
            for m in pattern.finditer(text, start, end):
                if done + m.start() - start >= at:
                    break
                done += m.start() - start + 1
                start = m.end()
            return start + at - done
        done, start = done + n, end
    return len(text) + at - done


def csv_text(body: bytes) -> bytes:
    text = sub_spaces(_LINE_BREAKS, b"\n", body.strip())  # lines trimmed, blank ones gone
    if not text:
        raise BadRequest("empty CSV body; expected one instance a line")
    _check_arrays(text)
    return text


def _check_arrays(text: bytes) -> None:
    """A 400 in CSV's words for a body whose request would open more JSON arrays than the
    parser takes (``MAX_CONTAINERS``: one a line of several fields, and each '[' or '{' in a
    field, which it counts too): it said 'body opens N JSON arrays or objects' and to send
    columnar "inputs", of a body that had neither."""
    lines = text.count(b"\n") + text.count(b"\r") + 1 if b"," in text else 0  # at least
    brackets = text.count(b"[") + text.count(b"{")
    opens = lines + brackets + 2  # and the request's own {"instances":[
    if opens > MAX_CONTAINERS:
        held, fewer = (f" and {brackets} '[' or '{{' in its fields", ", or fewer '[' and '{'"
                       ) if brackets else ("", "")
        raise BadRequest(f"CSV of {lines} lines of several fields{held} is a request of "
                         f"{opens} JSON arrays or objects, over {MAX_CONTAINERS}; expected "
                         f"fewer lines a request (at most {MAX_CONTAINERS - 2}){fewer}")


def _mixed_widths(text: bytes) -> bool:
    """Whether some lines have one field and others more (each is then written its own way)."""
    return b"," in text and _LINE_WITHOUT_COMMA.search(text) is not None


def csv_fields(body: bytes) -> bytes:
    """A ``text/csv`` body read a field at a time, as the container reads it: for text (or
    rows of mixed widths).  Strings are an object apiece whatever reads them, so they are
    held to ``MAX_STRINGS`` before any is made."""
    text = csv_text(body)
    # at least as many as there are: csv ends a line at a lone \r as at \n (csv_text keeps it)
    fields = text.count(b",") + text.count(b"\n") + text.count(b"\r") + 1
    if fields > MAX_STRINGS:
        raise BadRequest(f"CSV of {fields} fields with text in them is over {MAX_STRINGS} "
                         "(MAX_STRINGS); expected numbers only, or fewer fields")
    try:
        source = text.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _unreadable(e) from None
    out = io.StringIO()  # written as read: no list of every row's fields, nor of their JSON
    out.write('{"instances":[')
    try:
        for i, row in enumerate(csv.reader(io.StringIO(source, newline=""))):
            values = [_field(f) for f in row]
            out.write(("," if i else "") + (values[0] if len(values) == 1 else
                                             "[" + ",".join(values) + "]"))
    except csv.Error as e:
        raise _unreadable(e) from None
    out.write("]}")
    return out.getvalue().encode("utf-8")


def _unreadable(e: Exception) -> BadRequest:
    return BadRequest(f"CSV body is not readable ({e}); expected UTF-8, one instance a line, "
                      "fields separated by commas")


def _field(text: str) -> str:
    """A CSV field as JSON: a number as the number (without the spaces around it, which
    JSON may not take: \v, \f, U+00A0), anything else a string."""
    number = text.strip()
    return number if _NUMBER.fullmatch(number) else json.dumps(text)


__all__ = ["csv_fields", "csv_json", "csv_text", "sub_spaces", "unsub_offset"]
