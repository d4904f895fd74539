"""The exact bytes of an export (JSON Lines and CSV) of runs with hostile text.

runs.services.export encodes rows with per-column encoders (orjson for text, the times as
text from the database); these tests pin the bytes the first, plain-json version wrote, so
that any change of field order, spacing, escaping, time or number format shows.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runs.managers import TRANSFER_RUN_FIELDS
from runs.models import SkillRun
from runs.services import export

T0 = datetime(2026, 11, 20, 12, 0, 0, 123456, tzinfo=UTC)
# Quotes, backslashes, newlines, control characters (what the database can store: no NUL),
# the line and paragraph separators, right-to-left marks, astral characters.
HOSTILE = 'say "hi" \\n\nline2\r\n\t\x01\x1b\x1f\x7f\u2028\u2029 é \u202e مرحبا 🤖 \ufffd end'


def store_hostile() -> None:
    SkillRun.objects.create(
        id='q"\\1/é',
        skill_id="=SUM(A1)",
        caller_id="tab\there",
        channel_id="",
        parent_run_id="",
        status="ok",
        started_at=T0,
        finished_at=datetime(2026, 11, 20, 17, 45, 3, 7, tzinfo=timezone(timedelta(hours=5))),
        runtime_seconds=1e-05,
        tool_calls_count=-(2**63),
        total_input_tokens=2**63 - 1,
        total_output_tokens=0,
        total_thinking_tokens=12345678901234,
        output=HOSTILE * 4,  # longer than the CSV preview (160 characters)
        error="-1+1\r\nboom",
        inputs={"n": [1, "x"]},
    )
    SkillRun.objects.create(
        id="second",
        skill_id="plain",
        status="running",
        started_at=T0 - timedelta(hours=1, microseconds=123456),  # no fraction of a second
        runtime_seconds=1e16,
        inputs={},
    )


EXPECTED_JSONL = (
    b'{"id": "q\\"\\\\1/\xc3\xa9", "skill_id": "=SUM(A1)", "caller_id": "tab\\there'
    b'", "channel_id": "", "parent_run_id": "", "status": "ok", "started_at": "2026'
    b'-11-20T12:00:00.123456Z", "finished_at": "2026-11-20T12:45:03.000007Z", "runt'
    b'ime_seconds": 1e-05, "tool_calls_count": -9223372036854775808, "total_input_t'
    b'okens": 9223372036854775807, "total_output_tokens": 0, "total_thinking_tokens'
    b'": 12345678901234, "output": "say \\"hi\\" \\\\n\\nline2\\r\\n\\t\\u0001\\u00'
    b"1b\\u001f\x7f\xe2\x80\xa8\xe2\x80\xa9 \xc3\xa9 \xe2\x80\xae \xd9\x85\xd8\xb1\xd8\xad"
    b'\xd8\xa8\xd8\xa7 \xf0\x9f\xa4\x96 \xef\xbf\xbd endsay \\"hi\\" \\\\n\\nline2\\'
    b"r\\n\\t\\u0001\\u001b\\u001f\x7f\xe2\x80\xa8\xe2\x80\xa9 \xc3\xa9 \xe2\x80\xae"
    b" \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xf0\x9f\xa4\x96 \xef\xbf\xbd endsa"
    b'y \\"hi\\" \\\\n\\nline2\\r\\n\\t\\u0001\\u001b\\u001f\x7f\xe2\x80\xa8\xe2\x80\xa9'
    b" \xc3\xa9 \xe2\x80\xae \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xf0\x9f\xa4\x96"
    b' \xef\xbf\xbd endsay \\"hi\\" \\\\n\\nline2\\r\\n\\t\\u0001\\u001b\\u001f\x7f'
    b"\xe2\x80\xa8\xe2\x80\xa9 \xc3\xa9 \xe2\x80\xae \xd9\x85\xd8\xb1\xd8\xad\xd8\xa8"
    b'\xd8\xa7 \xf0\x9f\xa4\x96 \xef\xbf\xbd end", "error": "-1+1\\r\\nboom", "inpu'
    b'ts": {"n": [1, "x"]}}\n'
    b'{"id": "second", "skill_id": "plain", "caller_id": "", "channel_id": "", "par'
    b'ent_run_id": "", "status": "running", "started_at": "2026-11-20T11:00:00.0000'
    b'00Z", "finished_at": null, "runtime_seconds": 1e+16, "tool_calls_count": 0, "'
    b'total_input_tokens": 0, "total_output_tokens": 0, "total_thinking_tokens": 0,'
    b' "output": "", "error": "", "inputs": {}}\n'
)
EXPECTED_CSV = (
    b"\xef\xbb\xbfid,skill_id,caller_id,channel_id,parent_run_id,status,started_at,"
    b"finished_at,runtime_seconds,tool_calls_count,total_input_tokens,total_output_"
    b"tokens,total_thinking_tokens,output_preview,error_preview\r\n"
    b'"q""\\1/\xc3\xa9",\'=SUM(A1),tab\there,,,ok,2026-11-20T12:00:00.123456Z,2026-'
    b"11-20T12:45:03.000007Z,1e-05,-9223372036854775808,9223372036854775807,0,12345"
    b'678901234,"say ""hi"" \\n\n'
    b"line2\r\n"
    b"\t\x01\x1b\x1f\x7f\xe2\x80\xa8\xe2\x80\xa9 \xc3\xa9 \xe2\x80\xae \xd9\x85\xd8\xb1"
    b'\xd8\xad\xd8\xa8\xd8\xa7 \xf0\x9f\xa4\x96 \xef\xbf\xbd endsay ""hi"" \\n\n'
    b"line2\r\n"
    b"\t\x01\x1b\x1f\x7f\xe2\x80\xa8\xe2\x80\xa9 \xc3\xa9 \xe2\x80\xae \xd9\x85\xd8\xb1"
    b'\xd8\xad\xd8\xa8\xd8\xa7 \xf0\x9f\xa4\x96 \xef\xbf\xbd endsay ""hi"" \\n\n'
    b"line2\r\n"
    b"\t\x01\x1b\x1f\x7f\xe2\x80\xa8\xe2\x80\xa9 \xc3\xa9 \xe2\x80\xae \xd9\x85\xd8\xb1"
    b'\xd8\xad\xd8\xa8\xd8\xa7 \xf0\x9f\xa4\x96 \xef\xbf\xbd endsay ""hi"" \\n\n'
    b"line2\r\n"
    b'\t\x01\x1b\x1f\x7f\xe2\x80\xa8\xe2\x80\xa9 \xc3\xa9","\'-1+1\r\n'
    b'boom"\r\n'
    b"second,plain,,,,running,2026-11-20T11:00:00.000000Z,,1e+16,0,0,0,0,,\r\n"
)


@pytest.mark.django_db
def test_jsonl_bytes_of_hostile_runs_are_pinned():
    store_hostile()
    assert b"".join(export.jsonl_chunks(SkillRun.objects.all())) == EXPECTED_JSONL


@pytest.mark.django_db
def test_csv_bytes_of_hostile_runs_are_pinned():
    store_hostile()
    assert b"".join(export.csv_chunks(SkillRun.objects.all())) == EXPECTED_CSV


# --- the row encoder against json, value by value ------------------------------------------

_json = json.JSONEncoder(ensure_ascii=False).encode


def by_json(row: tuple) -> bytes:
    """A JSON Lines line as the first version wrote it: a dict encoded by json."""
    fields = dict(zip(TRANSFER_RUN_FIELDS, row, strict=False))
    for name in ("started_at", "finished_at"):
        if isinstance(fields[name], datetime):
            fields[name] = export.iso(fields[name])
    line = _json(fields)[:-1] + ', "inputs": ' + (row[-1] or "{}") + "}\n"
    return line.encode("utf-8", "replace")


# Any code point (lone surrogates too: another program's rows), any integer, any float.
texts = st.text(st.characters(codec=None, categories=None), max_size=12)
numbers = st.integers() | st.floats() | st.none()
times = (
    st.none()
    | st.sampled_from(["2026-11-20T12:00:00.123456Z"])
    | st.datetimes(
        datetime(1971, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=-3))])
    )
)


@settings(max_examples=300, deadline=None)
@given(
    st.tuples(*[texts] * 6, times, times, numbers, *[numbers] * 4, texts, texts, texts | st.none())
)
def test_each_line_is_what_json_wrote(row):
    if row[6] is None:
        row = (*row[:6], "2026-11-20T12:00:00.000000Z", *row[7:])
    assert export._run_lines([row]) == [by_json(row)]
    assert export._run_head(row) == by_json(row)[: -len(b"}\n")]


def test_rows_the_fast_path_refuses_come_out_as_json_wrote_them():
    base = ("id", "s", "c", "ch", "", "ok", "2026-11-20T12:00:00.123456Z", None, 1.5, 1, 2, 3, 4)
    rows = [
        (*base, "out\ud800put", "", "{}"),  # a lone surrogate: "?" in UTF-8
        (*base[:8], float("nan"), *base[9:], "", "", None),
        (*base[:8], float("-inf"), *base[9:], "", "", None),
        (*base[:9], 2**70, -(2**70), True, 1.5, "", "", None),  # beyond 64 bits, a bool
        (*base[:6], T0, T0, 7, *base[9:], "", "", None),  # datetimes, an int runtime
    ]
    for row in rows:
        assert export._run_lines([row]) == [by_json(row)]
