"""What `bspk sync` and `bspk check-config` say about drop stores, as a user walking the README
meets them: a folder that does not exist is one line, a store refused whole fails the sync (what
the brand's other sources sent is still taken), a landing bucket that does not exist names
BSPK_LANDING_URL and the file once, and `check-config --connect` opens each store once, ok or the
one-line reason per source. Never a stack trace."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from benchmarks.latency import free_port
from bspk_pipelines.cli import main
from bspk_pipelines.ingest.stores import NO_FOLDER
from bspk_pipelines_tests.builders import TWO_SHOPPERS

SHOPPER_FILE = "SHOPPER_V3_Acme_202401010900.csv"
PROJECT = Path(__file__).resolve().parent.parent


def _acme(tmp_path: Path, **drops: str) -> Path:
    """A brand file for acme with one native source per drop given, and its mappings folder."""
    mappings = tmp_path / "mappings"
    mappings.mkdir(exist_ok=True)
    sources = "".join(f"  {sid}: {{format: bspk, drop: '{drop}'}}\n" for sid, drop in drops.items())
    (mappings / "acme.yaml").write_text(f"brand: acme\ncompany_name: Acme\nsources:\n{sources}")
    return mappings


@pytest.fixture
def deployment(tmp_path, monkeypatch) -> Path:
    """The deployment's settings for a command run in this process: its data folder is returned,
    with acme's `main` drop folder in it holding one shopper file."""
    data = tmp_path / "data"
    (data / "drop" / "acme").mkdir(parents=True)
    (data / "drop" / "acme" / SHOPPER_FILE).write_text(TWO_SHOPPERS)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BSPK_DATA_DIR", str(data))
    monkeypatch.setenv("BSPK_MAPPINGS_DIR", str(tmp_path / "mappings"))
    for name in ("BSPK_WAREHOUSE_URL", "BSPK_LANDING_URL", "BSPK_SFTP_KEY_FILE", "BSPK_SFTP_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return data


def _sync(capsys, *args: str) -> tuple[int, list[str]]:
    code = main(["sync", "--settle", "0.05", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, out.splitlines()


def _applied(data: Path) -> list[tuple[str, str]]:
    import sqlite3

    with sqlite3.connect(data / "warehouse.sqlite") as db:
        return db.execute("select distinct name, status from files").fetchall()


def test_a_drop_folder_that_does_not_exist_is_said_and_fails_the_sync(deployment, tmp_path, capsys):
    """Before, a folder that was not there was taken for an empty one: sync said nothing, exit 0."""
    _acme(tmp_path, main="drop/acme", erp="drop/acme-erp")
    code, lines = _sync(capsys)
    assert code == 1
    assert f"  not taken: {deployment / 'drop' / 'acme-erp'}: refused: {NO_FOLDER}" in lines
    assert lines.count(f"  not taken: {deployment / 'drop' / 'acme-erp'}: refused: {NO_FOLDER}") == 1  # said once
    assert "  nothing was taken from erp: its drop store was refused (above); fix it, then: bspk sync --brand acme" \
        in lines
    assert _applied(deployment) == [(SHOPPER_FILE, "applied")]  # the other source's file is taken as ever


def test_a_store_refused_whole_fails_the_sync_even_with_allow_failed(deployment, tmp_path, sftp_server, monkeypatch):
    """An SFTP server that cannot be reached: before, `bspk sync` exited 0 and cron saw success."""
    monkeypatch.setenv("BSPK_SFTP_KEY_FILE", str(sftp_server.key_file))
    monkeypatch.setenv("BSPK_SFTP_KNOWN_HOSTS", str(sftp_server.known_hosts))
    down = f"sftp://{sftp_server.user}@127.0.0.1:{free_port()}/outbox"
    _acme(tmp_path, main="drop/acme", pos=down)
    done = subprocess.run([sys.executable, "-m", "bspk_pipelines.cli", "sync", "--settle", "0.05", "--allow-failed"],
                          capture_output=True, text=True, timeout=300,
                          env=os.environ | {"PYTHONPATH": str(PROJECT)})
    assert done.returncode == 1 and "Traceback" not in done.stdout + done.stderr, done.stdout + done.stderr
    [refused] = [line for line in done.stdout.splitlines() if "not taken:" in line]
    assert refused.startswith(f"  not taken: sftp://{sftp_server.user}@127.0.0.1:") and "cannot reach" in refused
    assert "  nothing was taken from pos: its drop store was refused" in done.stdout
    assert _applied(deployment) == [(SHOPPER_FILE, "applied")]


def test_a_landing_bucket_that_does_not_exist_names_the_landing_url_and_the_file_once(deployment, tmp_path, s3,
                                                                                      monkeypatch, capsys):
    """Before: `FILE: run .. FAILED: FILE: s3://.../FILE: the bucket does not exist: create it or
    correct the source's `drop``, of a bucket no source names."""
    bucket = f"no-such-landing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BSPK_LANDING_URL", f"s3://{bucket}/bspk")
    _acme(tmp_path, main="drop/acme")
    code, lines = _sync(capsys)
    assert code == 1
    [failed] = [line for line in lines if "FAILED" in line]
    assert failed.count(SHOPPER_FILE) == 1, failed
    assert failed.startswith(f"  {SHOPPER_FILE}: run ")
    assert failed.endswith(f"FAILED: the landing zone s3://{bucket}/bspk/ (BSPK_LANDING_URL): the bucket does not "
                           "exist: create it or correct BSPK_LANDING_URL"), failed


def _connect(capsys, mappings: Path) -> tuple[int, list[str], list[str]]:
    code = main(["check-config", "--mappings", str(mappings), "--connect"])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, out + err
    return code, out.splitlines(), err.splitlines()


def test_check_config_connect_opens_each_store_once_ok_or_why(deployment, tmp_path, sftp_server, s3, monkeypatch,
                                                              capsys):
    """Before, credentials and host keys were first tried by the first sync."""
    monkeypatch.setenv("BSPK_SFTP_KEY_FILE", str(sftp_server.key_file))
    monkeypatch.setenv("BSPK_SFTP_KNOWN_HOSTS", str(sftp_server.known_hosts))
    monkeypatch.setenv("MAISON_KEY", f"{sftp_server.key_file}.pub")
    bucket = f"drop-{uuid.uuid4().hex[:8]}"
    boto3.client("s3").create_bucket(Bucket=bucket)
    boto3.client("s3").put_object(Bucket=bucket, Key=f"outbox/{SHOPPER_FILE}", Body=TWO_SHOPPERS.encode())
    sftp = sftp_server.url(sftp_server.home)
    mappings = _acme(tmp_path, main="drop/acme", pos=sftp, s3=f"s3://{bucket}/outbox", erp="drop/acme-erp")
    (mappings / "acme.yaml").write_text((mappings / "acme.yaml").read_text() + (
        "  wms: {format: bspk, drop: '%s', drop_key_env: MAISON_KEY}\n" % sftp))
    code, out, err = _connect(capsys, mappings)
    assert code == 1
    assert out == [f"acme: main: {deployment / 'drop' / 'acme'}: ok (1 file(s) there)",
                   f"acme: pos: {sftp_server.url(sftp_server.home)}: ok (0 file(s) there)",
                   f"acme: s3: s3://{bucket}/outbox/: ok (1 file(s) there)"]
    assert err == [f"acme.yaml: sources.erp.drop ({deployment / 'drop' / 'acme-erp'}): {NO_FOLDER}",
                   f"acme.yaml: sources.wms.drop ({sftp}): MAISON_KEY ({sftp_server.key_file}.pub) points at a "
                   "public key; give the private key file",
                   "2 problem(s) found"]


def test_check_config_connect_lists_the_landing_zone_s_bucket(deployment, tmp_path, s3, monkeypatch, capsys):
    mappings = _acme(tmp_path, main="drop/acme")
    bucket = f"landing-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BSPK_LANDING_URL", f"s3://{bucket}/bspk")
    code, out, err = _connect(capsys, mappings)
    assert code == 1 and err == [f"the landing zone s3://{bucket}/bspk/ (BSPK_LANDING_URL): the bucket does not exist: "
                                 "create it or correct BSPK_LANDING_URL", "1 problem(s) found"]
    boto3.client("s3").create_bucket(Bucket=bucket)
    code, out, err = _connect(capsys, mappings)
    assert code == 0 and f"landing zone s3://{bucket}/bspk: ok" in out and err == []


def test_check_config_without_connect_connects_to_nothing_and_its_help_tells_connect(deployment, tmp_path, capsys):
    mappings = _acme(tmp_path, main=f"sftp://maison@127.0.0.1:{free_port()}/outbox")
    assert main(["check-config", "--mappings", str(mappings)]) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["check-config", "--help"])
    assert "--connect" in capsys.readouterr().out


@pytest.mark.parametrize("drop", ["sftp:/files.example.com/outbox", "s3:/maison-exports",
                                  "sftp:maison@files.example.com"])
def test_check_config_refuses_a_mistyped_address_rather_than_take_it_for_a_folder(deployment, tmp_path, capsys, drop):
    """Before, `sftp:/host/path` was a folder of that name: check-config said ok, sync found nothing."""
    mappings = _acme(tmp_path, main=drop)
    assert main(["check-config", "--mappings", str(mappings)]) == 1
    [problem, count] = capsys.readouterr().err.splitlines()
    form = "sftp://user@host:22/path" if drop.startswith("sftp") else "s3://bucket/prefix"
    assert problem.startswith(f"{mappings / 'acme.yaml'}: sources.main.drop: {drop}: ") and form in problem
    assert count == "1 problem(s) found"
