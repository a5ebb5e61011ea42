"""The two ways a CSV file is read give the same rows, lines and problems."""

from __future__ import annotations

import pytest

from bspk_pipelines.config import Dialect
from bspk_pipelines import parse
from bspk_pipelines.parse import _plain, read_batches

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
