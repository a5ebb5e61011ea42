"""What only a remote store can do wrong, and the landing zone in object storage.

An SFTP server whose host key is unknown or changed is never connected to; credentials that are
missing or refused, a key file that is a public key or a folder, and a server that cannot be
reached, are one clear line each naming what to change, and the brand's other sources go on. A
bucket, a folder or a prefix that does not exist says so. A `drop` that names no store, or is a
mistyped address (`sftp:/host/path`), is a config error. A landed file kept in object storage is
read by another machine with its bytes checked, and an altered one is refused; a landing bucket
that does not exist names BSPK_LANDING_URL.
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
from bspk_pipelines.ingest.stores import (
    NO_FOLDER, Changed, DropUrlError, Refused, S3Address, SftpCredentials, open_store, parse_drop,
)
from bspk_pipelines.model.brand import Brand
from bspk_pipelines.settings import SettingError, Settings
from benchmarks.latency import free_port
from bspk_pipelines_tests.builders import ONE_PRODUCT, SHOPPER

SHOPPER_FILE = "SHOPPER_V3_Acme_202401010900.csv"
PRODUCT_FILE = "PRODUCT_V2_Acme_202401010901.csv"
ROWS = (SHOPPER + "S1,Ann,Lee,,,F,ann@example.com,,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n").encode()


def _sftp(server, known_hosts: Path | None = None, key_file: str | None = None, port: int | None = None,
          path: Path | None = None, key_env: str = "BSPK_SFTP_KEY_FILE"):
    """A store on the test server's folder (or `path`), with the given trust and credentials."""
    url = f"sftp://{server.user}@{server.host}:{port or server.port}{path or server.home}"
    return open_store(url, Path(), known_hosts or server.known_hosts, SftpCredentials(key_file, key_env=key_env))


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
    assert message.startswith(f"BSPK_SFTP_KEY_FILE ({tmp_path / 'no_key'}) does not exist")


def test_a_public_key_or_a_folder_given_as_the_key_names_the_variable_and_what_to_give(sftp_server, tmp_path):
    """Before, a .pub file gave paramiko's own message naming no variable, and a folder 'did not exist'."""
    public = f"{sftp_server.key_file}.pub"
    message = _refusal(_sftp(sftp_server, key_file=public, key_env="MAISON_SFTP_KEY"))
    assert message == f"MAISON_SFTP_KEY ({public}) points at a public key; give the private key file"
    copied = tmp_path / "maison_key"  # a public key under another name: told by its first bytes
    copied.write_bytes(Path(public).read_bytes())
    assert "points at a public key" in _refusal(_sftp(sftp_server, key_file=str(copied)))
    message = _refusal(_sftp(sftp_server, key_file=str(tmp_path), key_env="MAISON_SFTP_KEY"))
    assert message == f"MAISON_SFTP_KEY ({tmp_path}) is a folder, not a key file: give the private key file"


def test_the_source_s_key_variable_is_named_in_what_to_change(sftp_server, tmp_path, monkeypatch, engine):
    """The variable named is the one the source's `drop_key_env` names, not the default."""
    monkeypatch.setenv("MAISON_SFTP_KEY", f"{sftp_server.key_file}.pub")
    brand = Brand.model_validate({"brand": "maison", "company_name": "Maison", "sources": {"pos": {
        "format": "bspk", "drop": sftp_server.url(sftp_server.home), "drop_key_env": "MAISON_SFTP_KEY"}}})
    store = Layout(tmp_path, known_hosts=sftp_server.known_hosts).drop_store(brand, "pos")
    assert _refusal(store).startswith("MAISON_SFTP_KEY (")


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
    # The store is named by whoever reports it (`<where>: refused: ...`): not again in the reason.
    assert _refusal(store) == "the bucket does not exist: create it or correct the source's `drop`"


def test_a_drop_folder_that_does_not_exist_says_so_and_an_empty_prefix_is_an_empty_drop(sftp_server, s3, tmp_path):
    """Before, a folder that was not there was an empty one: a typo in `drop` took nothing, silently.
    A bucket has no folders: a prefix with nothing under it (yet, or since the brand's retention
    emptied it) is an empty drop, not an error that would fail every sync until a file comes."""
    assert _refusal(open_store("drop/nowhere", tmp_path)) == NO_FOLDER
    assert _refusal(open_store(str(tmp_path / "nowhere"), tmp_path)) == NO_FOLDER
    assert _refusal(_sftp(sftp_server, key_file=str(sftp_server.key_file), path=sftp_server.home / "nowhere")) \
        == NO_FOLDER
    bucket = _bucket()
    assert look(open_store(f"s3://{bucket}/nothing-yet", tmp_path), {}).seen == {}
    boto3.client("s3").put_object(Bucket=bucket, Key="outbox/", Body=b"")  # a folder made in the console
    assert look(open_store(f"s3://{bucket}/outbox", tmp_path), {}).seen == {}
    assert look(open_store(f"s3://{bucket}", tmp_path), {}).seen == {}  # a bucket is there once it exists


def test_a_shopify_source_s_folder_is_empty_until_its_first_pull(tmp_path):
    brand = Brand.model_validate({"brand": "lune", "company_name": "Lune", "sources": {"shop": {
        "format": "shopify", "shop": "lune.myshopify.com", "api_version": "2026-01", "token_env": "LUNE_TOKEN"}}})
    assert look(Layout(tmp_path).drop_store(brand, "shop"), {}).seen == {}


@pytest.mark.parametrize(("drop", "says"), [
    # A mistyped address would be a folder named `sftp:`, where nothing ever arrives.
    ("sftp:/files.example.com/outbox", "an SFTP drop is written sftp://user@host:22/path"),
    ("sftp:maison@files.example.com", "an SFTP drop is written sftp://user@host:22/path"),
    ("SFTP:/files.example.com/outbox", "an SFTP drop is written sftp://user@host:22/path"),
    ("s3:/maison-exports", "an S3 drop is written s3://bucket/prefix"),
    ("s3:maison-exports/outbox", "an S3 drop is written s3://bucket/prefix"),
    ("ftp:files.example.com", "a drop is a folder, sftp://user@host:22/path or s3://bucket/prefix .a folder whose "
                              "name has a colon is written ./ftp:files.example.com."),
    ("sftp://files.example.com/outbox", "names its user and host"),
    ("sftp://maison:hunter2@files.example.com/outbox", "never write a password"),
    ("sftp://maison@files.example.com:99999/outbox", "port must be a number"),
    ("ftp://maison@files.example.com/outbox", "ftp:// is not one of them"),
    ("s3://bucket:9000/prefix", "AWS_ENDPOINT_URL_S3"),
])
def test_a_drop_that_names_no_store_is_a_config_error(drop, says):
    with pytest.raises(ValueError, match=says):
        Brand.model_validate({"brand": "acme", "company_name": "Acme", "sources": {"main": {"format": "bspk", "drop": drop}}})


@pytest.mark.parametrize("drop", ["sftp:/files.example.com/outbox", "s3:maison-exports"])
def test_a_mistyped_address_is_named_with_its_right_form(drop):
    with pytest.raises(DropUrlError) as e:
        parse_drop(drop)
    assert str(e.value).startswith(f"{drop}: an S") and str(e.value).endswith(", with `://`")


@pytest.mark.parametrize(("drop", "folder"), [
    ("drops/acme", Path("drops/acme")), ("/srv/drops/acme", Path("/srv/drops/acme")),
    ("drop/acme:pos", Path("drop/acme:pos")), ("./sftp:pos", Path("sftp:pos")), ("sftp", Path("sftp")),
])
def test_folders_relative_or_absolute_are_folders(drop, folder):
    assert parse_drop(drop) == folder


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


def test_a_landing_bucket_that_does_not_exist_names_the_landing_url_not_a_drop(s3, harness, tmp_path):
    here = Layout(tmp_path / "here", landing_url=f"s3://no-such-landing-{uuid.uuid4().hex[:8]}/bspk")
    (tmp_path / "here" / "drop" / "acme").mkdir(parents=True)
    (tmp_path / "here" / "drop" / "acme" / SHOPPER_FILE).write_bytes(ROWS)
    with pytest.raises(Refused) as e:
        land(harness.engine, here, harness.brand, classify(harness.brand, "main", SHOPPER_FILE))
    message = str(e.value)
    assert message.startswith(f"the landing zone s3://{here.landing_url[5:]}/ (BSPK_LANDING_URL): ") \
        and message.endswith("the bucket does not exist: create it or correct BSPK_LANDING_URL")
    assert SHOPPER_FILE not in message and "`drop`" not in message  # the run's failure names the file
    with pytest.raises(Refused, match=r"^the landing zone .* \(BSPK_LANDING_URL\): the bucket does not exist"):
        from bspk_pipelines.ingest.stores import s3 as s3_store
        s3_store.check_landing(S3Address(here.landing_url[5:].split("/")[0], "bspk/"))


def test_a_landed_original_altered_in_object_storage_is_refused(s3, tmp_path):
    bucket = _bucket()
    boto3.client("s3").put_object(Bucket=bucket, Key=f"acme/landing/main/{SHOPPER_FILE}", Body=ROWS + b"tampered\n",
                                  Metadata={"sha256": hashlib.sha256(ROWS).hexdigest()})
    there = Layout(tmp_path / "there", landing_url=f"s3://{bucket}")
    with pytest.raises(Changed, match="do not match the sha256 kept with it"):
        there.landed_copy("acme", "main", SHOPPER_FILE)
    folder = there.landed("acme", "main", SHOPPER_FILE).parent
    assert list(folder.iterdir()) == []  # no copy left to be read as if it were the original
