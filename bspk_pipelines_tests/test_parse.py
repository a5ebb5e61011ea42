"""The two ways a CSV file is read give the same rows, lines and problems; a row over 1 MiB is a
reject, read past without being held."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bspk_pipelines.model.mapping import Dialect
from bspk_pipelines.ingest import parse
from bspk_pipelines.ingest.parse import _plain, read_batches

HEADER = ["ref", "name", "city"]
PLAIN = b"ref,name,city\r\nA1,Marie,Paris\r\n\r\nA2,,  \r\nA3,Pierre\r\n,,\r\nA4,x,y,z\r\n   \r\nA5,Lea,Lyon"


def batches(path, batch_rows):
    out = list(read_batches(path, Dialect(), HEADER, batch_rows=batch_rows))
    rows = [r for b in out for r in b.rows.iter_rows()]
    problems = [(p.line, p.column, p.value, p.rule, p.message) for b in out for p in b.problems]
    return rows, problems


@pytest.mark.parametrize("batch_rows", [1, 2, 100])
def test_plain_file_reads_the_same_by_polars_and_by_the_csv_module(tmp_path, monkeypatch, batch_rows):
    path = tmp_path / "plain.csv"
    path.write_bytes(PLAIN.replace(b"A5,Lea,Lyon", b'A5,"Lea",Lyon'))  # a whole quoted field is still plain
    assert _plain(path, Dialect())
    fast = batches(path, batch_rows)
    monkeypatch.setattr(parse, "_plain", lambda *_: False)
    assert batches(path, batch_rows) == fast
    rows, problems = fast
    assert rows == [("A1", "Marie", "Paris", 2), ("A2", None, None, 4), (None, None, None, 6), ("A5", "Lea", "Lyon", 9)]
    assert [(line, rule) for line, _, _, rule, _ in problems] == [(5, "field_count"), (7, "field_count"), (8, "field_count")]


@pytest.mark.parametrize("content", [
    b"a,b\n\xe9\n", b"a,b\nx\x00,y\n", b"a,b\rx,y\r", b'a,b\n"x,1",y\n', b'a,b\n"x\ny",z\n', b'a,b\n"5"" tall",y\n', b'a,b\nx"y,z\n',
])
def test_files_that_are_not_plain_take_the_exact_path(tmp_path, content):
    path = tmp_path / "f.csv"
    path.write_bytes(content)
    assert not _plain(path, Dialect())


# --- rows over MAX_ROW_BYTES: rejected, read past in pieces, the rest of the file goes on -------------

MAX = parse.MAX_ROW_BYTES
FIELD_MESSAGE = "the value is longer than 1,048,576 bytes (1 MiB), the most a field may hold"
ROW_MESSAGE = "the row is longer than 1,048,576 bytes (1 MiB), the most a row may hold"
QUOTED_LINES = "ab, c\r\n" * (MAX // 7 + 1)  # a quoted field spanning lines, each short


@pytest.mark.parametrize("long_row, value, message, next_line", [
    pytest.param(b"A2," + b"x" * (MAX + 1) + b",Lyon", "x" * 200, FIELD_MESSAGE, 4, id="one_unquoted_field"),
    pytest.param(b'A2,"' + QUOTED_LINES.encode() + b'",Lyon', QUOTED_LINES[:200], FIELD_MESSAGE, 4 + QUOTED_LINES.count("\n"),
                 id="quoted_field_over_many_lines"),
    # Bytes, not characters: 600,000 characters of two bytes each.
    pytest.param("A2,{},Lyon".format("é" * 600_000).encode(), "é" * 200, FIELD_MESSAGE, 4, id="bytes_not_characters"),
    # No one field is over, the row is.
    pytest.param(b"A2," + b"x" * (MAX // 2) + b"," + b"y" * (MAX // 2), "", ROW_MESSAGE, 4, id="row_as_a_whole"),
    # Text after a closing quote: as the csv reader does, the rest of the line goes with the row.
    pytest.param(b'A2,"' + b"x" * (MAX + 1) + b'"oops,"never closed', "x" * 200, FIELD_MESSAGE, 4, id="text_after_closing_quote"),
])
def test_a_row_over_1_mib_is_a_length_reject_and_the_rest_of_the_file_goes_on(tmp_path, long_row, value, message, next_line):
    path = tmp_path / "long.csv"
    path.write_bytes(b"ref,name,city\r\nA1,Marie,Paris\r\n" + long_row + b"\r\nA3,Pierre,Nice\r\n")
    assert not _plain(path, Dialect())  # polars would hold the line whole: the csv path reads past it
    rows, problems = batches(path, 1)
    assert rows == [("A1", "Marie", "Paris", 2), ("A3", "Pierre", "Nice", next_line)]
    assert [p[:4] for p in problems] == [(3, "*" if message == ROW_MESSAGE else "name", value, "length")]
    assert problems[0][4].startswith(message)


def test_a_line_of_exactly_1_mib_is_read_and_one_byte_more_is_not(tmp_path):
    fits, over = b"A2," + b"x" * (MAX - 8) + b",Lyon", b"A3," + b"x" * (MAX - 7) + b",Lyon"
    assert (len(fits), len(over)) == (MAX, MAX + 1)
    path = tmp_path / "edge.csv"
    path.write_bytes(b"ref,name,city\r\n" + fits + b"\r\n" + over + b"\r\n")
    rows, problems = batches(path, 100)
    assert [(r[0], len(r[1]), r[3]) for r in rows] == [("A2", MAX - 8, 2)]
    assert [p[:4] for p in problems] == [(3, "*", "", "length")]


@pytest.mark.parametrize("content, error", [
    (b"ref,name,city" + b",x" * MAX + b"\nA1,Marie,Paris\n",
     "long.csv: line 1: the header is longer than 1,048,576 bytes (1 MiB): is this a CSV file?"),
    (b'ref,name,city\nA1,Marie,Paris\nA2,"' + b"x" * (MAX + 1) + b"\nA3,Pierre,Nice\n",
     "long.csv: line 3: not readable as CSV: unexpected end of data (a quoted field that is never closed?)"),
])
def test_a_long_header_or_a_long_quote_never_closed_fails_the_file(tmp_path, content, error):
    path = tmp_path / "long.csv"
    path.write_bytes(content)
    with pytest.raises(parse.FileFailure) as failure:
        batches(path, 100)
    assert str(failure.value) == error


# Reads a file in a fresh process; prints the growth of its peak RSS in MiB, then the rows and rejects read.
MEASURE = """
import resource, sys
from pathlib import Path
from bspk_pipelines.model.mapping import Dialect
from bspk_pipelines.ingest.parse import read_batches
path, before = Path(sys.argv[1]), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    out = [(b.rows.height, len(b.problems)) for b in read_batches(path, Dialect(encoding=sys.argv[2]), ["ref", "name", "city"])]
except Exception as e:
    out = repr(e)[:100]
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, out)
"""


# The quoted field spans short lines: read as cp1252, the file goes to the csv module at once,
# without the look of polars over its lines that tells a plain UTF-8 file (memory polars takes).
@pytest.mark.parametrize("opening, piece, encoding", [("", "x" * 1023 + " ", "utf-8"), ('"', "lorem, ipsum\n" * 64, "cp1252")],
                         ids=["one_line", "quoted_over_many_lines"])
def test_a_huge_field_is_read_past_without_holding_it(tmp_path, opening, piece, encoding):
    path = tmp_path / "huge.csv"
    with path.open("w", newline="") as f:
        f.write("ref,name,city\nA1,Marie,Paris\nA2," + opening)
        for _ in range((64 << 20) // len(piece)):
            f.write(piece)
        f.write(opening + ",Lyon\nA3,Pierre,Nice\n")
    env = {**os.environ, "PYTHONPATH": str(Path(parse.__file__).parent.parent)}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path), encoding], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    growth, read = out.stdout.split(" ", 1)
    # Held whole, the field alone would be 64 MiB (polars held several copies): a few pieces at most.
    assert int(growth) < 32, out.stdout
    assert read.strip() == "[(2, 1)]"
