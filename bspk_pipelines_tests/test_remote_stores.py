"""What only a remote store can do wrong, and the landing zone in object storage.

An SFTP server whose host key is unknown or changed is never connected to; credentials that are
missing or refused, and a server that cannot be reached, are one clear line each, and the brand's
other sources go on. A bucket that does not exist says so. A `drop` that names no store is a
config error. A landed file kept in object storage is read by another machine with its bytes
checked, and an altered one is refused.
"""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from pathlib import Path

import boto3
import pytest

from bspk_pipelines.defs.ingest.sensors import load_cursor, plan_runs
from bspk_pipelines.ingest.drop import classify, look
from bspk_pipelines.ingest.land import land
from bspk_pipelines.ingest.layout import Layout
from bspk_pipelines.ingest.stores import Changed, Refused, open_store
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.settings import SettingError, Settings
from benchmarks.latency import free_port
from bspk_pipelines_tests.builders import ONE_PRODUCT, SHOPPER

SHOPPER_FILE = "SHOPPER_V3_Acme_202401010900.csv"
PRODUCT_FILE = "PRODUCT_V2_Acme_202401010901.csv"
ROWS = (SHOPPER + "S1,Ann,Lee,,,F,ann@example.com,,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n").encode()


def _sftp(server, known_hosts: Path | None = None, key_file: str | None = None, port: int | None = None):
    """A store on the test server's folder, with the given trust and credentials."""
    url = f"sftp://{server.user}@{server.host}:{port or server.port}{server.home}"
    return open_store(url, Path(), known_hosts or server.known_hosts, key_file)


def _refusal(store) -> str:
    with pytest.raises(Refused) as e:
        look(store, {})
    store.close()
    assert e.value.retried  # looked at again at the next tick, once fixed
    return str(e.value)


def test_an_unknown_host_key_is_never_accepted(sftp_server, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    message = _refusal(_sftp(sftp_server, empty, str(sftp_server.key_file)))
    assert "host key is not in" in message and "never accepted unseen" in message and "ssh-keyscan" in message


def test_a_changed_host_key_is_refused(sftp_server, tmp_path):
    other = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kind, key = (tmp_path / "other_key.pub").read_text().split()[:2]
    known = tmp_path / "known_hosts"
    known.write_text(f"[{sftp_server.host}]:{sftp_server.port} {kind} {key}\n")
    assert "offered a host key other than the one in" in _refusal(_sftp(sftp_server, known, str(sftp_server.key_file)))


def test_a_missing_known_hosts_file_says_where_to_put_the_key(sftp_server, tmp_path):
    message = _refusal(_sftp(sftp_server, tmp_path / "nowhere", str(sftp_server.key_file)))
    assert "does not exist" in message and "BSPK_SFTP_KNOWN_HOSTS" in message


def test_credentials_missing_or_refused_are_named(sftp_server, tmp_path):
    assert "BSPK_SFTP_KEY_FILE" in _refusal(_sftp(sftp_server))
    stranger = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    assert "refused the credentials" in _refusal(_sftp(sftp_server, key_file=str(stranger)))


def test_a_key_file_that_is_not_there_is_named(sftp_server, tmp_path):
    message = _refusal(_sftp(sftp_server, key_file=str(tmp_path / "no_key")))
    assert f"the private key file {tmp_path / 'no_key'}" in message and "does not exist" in message


def test_a_server_that_cannot_be_reached_is_tried_again(sftp_server):
    assert "cannot reach" in _refusal(_sftp(sftp_server, key_file=str(sftp_server.key_file), port=free_port()))


def test_a_store_refused_whole_never_stops_the_brands_other_sources(sftp_server, tmp_path, engine, monkeypatch):
    """The brand's SFTP server is down; its local source's files are taken as ever."""
    monkeypatch.setenv("BSPK_SFTP_KEY_FILE", str(sftp_server.key_file))
    brand = Brand.model_validate({"brand": "acme", "company_name": "Acme", "sources": {
        "pos": {"format": "bspk", "drop": f"sftp://{sftp_server.user}@127.0.0.1:{free_port()}/outbox"},
        "erp": {"format": "bspk", "drop": "drop/erp"}}})
    layout = Layout(tmp_path / "data", known_hosts=sftp_server.known_hosts)
    (tmp_path / "data" / "drop" / "erp").mkdir(parents=True)
    (tmp_path / "data" / "drop" / "erp" / PRODUCT_FILE).write_text(ONE_PRODUCT)
    first = plan_runs(brand, layout, engine, load_cursor(None))
    second = plan_runs(brand, layout, engine, first.cursor)
    assert [r.partition_key for r in second.runs if r.partition_key] == [PRODUCT_FILE]
    [problem] = set(second.failed)
    assert problem.startswith(f"sftp://{sftp_server.user}@127.0.0.1:") and "cannot reach" in problem


def test_a_bucket_that_does_not_exist_says_so(s3):
    store = open_store(f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/outbox", Path())
    assert "the bucket does not exist" in _refusal(store)


@pytest.mark.parametrize(("drop", "says"), [
    ("sftp://files.example.com/outbox", "names its user and host"),
    ("sftp://maison:hunter2@files.example.com/outbox", "never write a password"),
    ("sftp://maison@files.example.com:99999/outbox", "port must be a number"),
    ("ftp://maison@files.example.com/outbox", "ftp:// is not one of them"),
    ("s3://bucket:9000/prefix", "AWS_ENDPOINT_URL_S3"),
])
def test_a_drop_that_names_no_store_is_a_config_error(drop, says):
    with pytest.raises(ValueError, match=says):
        Brand.model_validate({"brand": "acme", "company_name": "Acme", "sources": {"main": {"format": "bspk", "drop": drop}}})


def test_the_landing_url_must_be_a_bucket():
    with pytest.raises(SettingError, match="BSPK_LANDING_URL: expected s3://bucket/prefix"):
        Settings.from_env({"BSPK_LANDING_URL": "/srv/landing"})
    assert Settings.from_env({"BSPK_LANDING_URL": "s3://landing/bspk"}).landing_url == "s3://landing/bspk"


def _bucket() -> str:
    name = f"landing-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def test_a_file_landed_in_object_storage_is_read_by_another_machine(s3, harness, tmp_path):
    bucket = _bucket()
    here = Layout(tmp_path / "here", landing_url=f"s3://{bucket}/bspk")
    brand = harness.brand
    (tmp_path / "here" / "drop" / "acme").mkdir(parents=True)
    (tmp_path / "here" / "drop" / "acme" / SHOPPER_FILE).write_bytes(ROWS)
    land(harness.engine, here, brand, classify(brand, "main", SHOPPER_FILE))
    kept = boto3.client("s3").get_object(Bucket=bucket, Key=f"bspk/acme/landing/main/{SHOPPER_FILE}")
    assert kept["Body"].read() == ROWS and kept["Metadata"]["sha256"] == hashlib.sha256(ROWS).hexdigest()
    assert here.landed_at("acme", "main", SHOPPER_FILE) == f"s3://{bucket}/bspk/acme/landing/main/{SHOPPER_FILE}"
    # A run worker on another machine: a data folder of its own, the same landing zone.
    there = Layout(tmp_path / "there", landing_url=f"s3://{bucket}/bspk")
    assert not there.landed("acme", "main", SHOPPER_FILE).exists()
    assert there.landed_copy("acme", "main", SHOPPER_FILE).read_bytes() == ROWS


def test_a_landed_original_altered_in_object_storage_is_refused(s3, tmp_path):
    bucket = _bucket()
    boto3.client("s3").put_object(Bucket=bucket, Key=f"acme/landing/main/{SHOPPER_FILE}", Body=ROWS + b"tampered\n",
                                  Metadata={"sha256": hashlib.sha256(ROWS).hexdigest()})
    there = Layout(tmp_path / "there", landing_url=f"s3://{bucket}")
    with pytest.raises(Changed, match="do not match the sha256 kept with it"):
        there.landed_copy("acme", "main", SHOPPER_FILE)
    folder = there.landed("acme", "main", SHOPPER_FILE).parent
    assert list(folder.iterdir()) == []  # no copy left to be read as if it were the original
