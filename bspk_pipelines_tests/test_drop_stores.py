"""One drop-folder suite for every drop store: a local folder, an SFTP folder on a real OpenSSH
server and a bucket prefix on an S3 server (moto's, standing in for a bucket), each on SQLite and
PostgreSQL. The brand's side writes as a brand would: into the folder, over SFTP with its own
client, or with S3 PUTs. Every rule of the local folder holds for each store: a file counts once
stable or once it has a `.done` marker, temporary names are ignored, the bytes applied are the
bytes hashed, links and entries that are not regular files are refused, one bad entry never stops
the others, a name sent again with other bytes is the next delivery."""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path

import boto3
import dagster as dg
import paramiko
import pytest
import sqlalchemy as sa

from bspk_pipelines.cli.instance import QUIET
from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.land import land
from bspk_pipelines.ingest.stores import Changed
from bspk_pipelines.model.brand import Brand
from bspk_pipelines_tests.builders import DROP_SENSOR, ONE_PRODUCT, SHOPPER, tick

SHOPPER_FILE = "SHOPPER_V3_Acme_202401010900.csv"
PRODUCT_FILE = "PRODUCT_V2_Acme_202401010901.csv"
SECRET = "X1,Secret,Person,,,F,secret@example.com,,,,,,,,Oslo,,,NO,,,,,TRUE,FALSE\n"


def shoppers(n: int, first: str = "First") -> bytes:
    return (SHOPPER + "".join(f"S{i},{first}{i},Last{i},,,F,s{i}@example.com,,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n"
                              for i in range(n))).encode()


class BrandSide:
    """A brand's side of a drop store: how it puts, rewrites and links files there."""

    kind: str
    drop: str  # what the brand file's `drop` says

    def put(self, name: str, data: bytes) -> None: ...
    def link(self, name: str, target: Path) -> None: ...
    def fifo(self, name: str) -> None: ...
    def put_in_subfolder(self, folder: str, name: str, data: bytes) -> None: ...


class LocalSide(BrandSide):
    kind = "local"

    def __init__(self, folder: Path):
        folder.mkdir(parents=True)
        self.folder, self.drop = folder, str(folder)

    def put(self, name, data):
        (self.folder / name).write_bytes(data)

    def link(self, name, target):
        (self.folder / name).symlink_to(target)

    def fifo(self, name):
        os.mkfifo(self.folder / name)

    def put_in_subfolder(self, folder, name, data):
        (self.folder / folder).mkdir()
        (self.folder / folder / name).write_bytes(data)


class SftpSide(BrandSide):
    """Writes over SFTP with a client of its own, as the brand's export job would."""

    kind = "sftp"

    def __init__(self, server, folder: Path):
        self.server, self.folder = server, folder
        self.drop = server.url(folder)
        self.client = paramiko.SSHClient()
        self.client.load_host_keys(str(server.known_hosts))
        self.client.connect(server.host, server.port, server.user, key_filename=str(server.key_file),
                            allow_agent=False, look_for_keys=False)
        self.sftp = self.client.open_sftp()
        self.sftp.mkdir(str(folder))

    def put(self, name, data):
        with self.sftp.open(str(self.folder / name), "wb") as f:
            f.write(data)

    def link(self, name, target):
        self.sftp.symlink(str(target), str(self.folder / name))

    def fifo(self, name):
        os.mkfifo(self.folder / name)  # SFTP cannot make one: made on the server's disk

    def put_in_subfolder(self, folder, name, data):
        self.sftp.mkdir(str(self.folder / folder))
        with self.sftp.open(str(self.folder / folder / name), "wb") as f:
            f.write(data)

    def close(self):
        self.client.close()


class S3Side(BrandSide):
    """PUTs objects under the prefix, as the brand's system would."""

    kind = "s3"

    def __init__(self, bucket: str, prefix: str):
        self.s3 = boto3.client("s3")
        self.s3.create_bucket(Bucket=bucket)
        self.bucket, self.prefix = bucket, prefix
        self.drop = f"s3://{bucket}/{prefix}"

    def put(self, name, data):
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{name}", Body=data)

    def put_in_subfolder(self, folder, name, data):
        self.s3.put_object(Bucket=self.bucket, Key=f"{self.prefix}/{folder}/{name}", Body=data)


@pytest.fixture(params=["local", "sftp", "s3"])
def store(request, tmp_path, monkeypatch, warehouse_url):
    """The brand's side of a drop store of each kind, and the definitions of a brand that drops there."""
    from bspk_pipelines.defs.project import build_definitions
    from bspk_pipelines.defs.resources import BrandFoldersResource, WarehouseResource

    known_hosts = None
    if request.param == "local":
        side = LocalSide(tmp_path / "drop")
    elif request.param == "sftp":
        server = request.getfixturevalue("sftp_server")
        monkeypatch.setenv("BSPK_SFTP_KEY_FILE", str(server.key_file))
        side, known_hosts = SftpSide(server, server.home / uuid.uuid4().hex), str(server.known_hosts)
        request.addfinalizer(side.close)
    else:
        request.getfixturevalue("s3")
        side = S3Side(f"drop-{uuid.uuid4().hex[:12]}", "outbox/pos")
    brand = Brand.model_validate({"brand": "acme", "company_name": "Acme",
                                  "sources": {"main": {"format": "bspk", "drop": side.drop}}})
    folders = BrandFoldersResource(data_dir=str(tmp_path / "data"), known_hosts=known_hosts)
    side.defs = build_definitions([brand], {"warehouse": WarehouseResource(url=warehouse_url), "folders": folders})
    side.brand = brand
    return side


def _files(defs) -> dict[str, tuple[str, str | None]]:
    with defs.resources["warehouse"].engine.connect() as conn:
        return {r.name: (r.status, r.error) for r in conn.execute(sa.text("select name, status, error from files"))}


def _landed(defs) -> dict[str, bytes]:
    folder = Path(defs.resources["folders"].data_dir) / "acme" / "landing"
    return {p.name: p.read_bytes() for p in folder.rglob("*") if p.is_file()} if folder.exists() else {}


def _settled(defs, cursor=None):
    """Two looks, as two daemon ticks make them: the second finds files settled."""
    return tick(defs, DROP_SENSOR, tick(defs, DROP_SENSOR, cursor).cursor)


def _run(defs, instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("acme__main__files", [request.partition_key])
    return defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance, partition_key=request.partition_key, asset_selection=request.asset_selection,
        tags=request.tags, raise_on_error=False, run_config=QUIET)


def _count(defs, table: str) -> int:
    with defs.resources["warehouse"].engine.connect() as conn:
        return conn.execute(sa.text(f"select count(*) from {table}")).scalar()


def test_a_file_counts_once_stable_or_marked_done_and_temporary_names_are_ignored(store):
    store.put(SHOPPER_FILE, shoppers(2))
    for ignored in (f"{PRODUCT_FILE}.part", f"{PRODUCT_FILE}.tmp", f".{PRODUCT_FILE}"):
        store.put(ignored, ONE_PRODUCT.encode())
    first = tick(store.defs, DROP_SENSOR)
    assert first.run_requests == []  # one look: nothing to compare with yet
    store.put(PRODUCT_FILE, ONE_PRODUCT.encode())
    store.put(f"{PRODUCT_FILE}.done", b"")
    second = tick(store.defs, DROP_SENSOR, first.cursor)
    # The shopper file settled; the product file is taken at its first look, for its marker.
    assert sorted(r.partition_key for r in second.run_requests if r.partition_key) == [PRODUCT_FILE, SHOPPER_FILE]
    assert set(_files(store.defs)) == set()


def test_a_file_lands_byte_for_byte_and_its_rows_apply(store, dagster_home):
    data = shoppers(3)
    store.put(SHOPPER_FILE, data)
    [request] = _settled(store.defs).run_requests
    assert request.tags["bspk/sha256"] == hashlib.sha256(data).hexdigest()
    with dg.DagsterInstance.get() as instance:
        assert _run(store.defs, instance, request).success
    assert _landed(store.defs) == {SHOPPER_FILE: data}
    assert _files(store.defs)[SHOPPER_FILE][0] == "applied" and _count(store.defs, "shoppers") == 3
    # The next looks take nothing again: the file is still in the store, recorded as taken.
    assert _settled(store.defs).run_requests == []


def test_a_name_sent_again_with_other_bytes_is_the_next_delivery(store, dagster_home):
    store.put(SHOPPER_FILE, shoppers(3))
    [request] = _settled(store.defs).run_requests
    with dg.DagsterInstance.get() as instance:
        assert _run(store.defs, instance, request).success
        if store.kind == "sftp":
            time.sleep(1.1)  # SFTP times are whole seconds: the rewrite shows in a later second
        store.put(SHOPPER_FILE, shoppers(3, first="Other"))  # a fixed export name, the same size
        [again] = _settled(store.defs).run_requests
        assert again.partition_key == f"{SHOPPER_FILE}@2"
        assert _run(store.defs, instance, again).success
    with store.defs.resources["warehouse"].engine.connect() as conn:
        assert conn.execute(sa.text("select first_name from shoppers where shopper_ref='S1'")).scalar() == "Other1"


def test_the_same_bytes_put_again_are_the_same_delivery(store, dagster_home):
    data = shoppers(2)
    store.put(SHOPPER_FILE, data)
    [request] = _settled(store.defs).run_requests
    with dg.DagsterInstance.get() as instance:
        assert _run(store.defs, instance, request).success
    if store.kind == "sftp":
        time.sleep(1.1)
    store.put(SHOPPER_FILE, data)  # re-uploaded: a new time (and ETag on S3), the same bytes
    assert _settled(store.defs).run_requests == []
    assert list(_files(store.defs)) == [SHOPPER_FILE]


def test_a_file_changed_after_it_was_found_ready_lands_nothing_then_lands_whole(store, dagster_home):
    store.put(SHOPPER_FILE, shoppers(2))
    early = _settled(store.defs)
    [request] = early.run_requests
    if store.kind == "sftp":
        time.sleep(1.1)
    store.put(SHOPPER_FILE, shoppers(5))  # the export went on after the file looked settled
    with dg.DagsterInstance.get() as instance:
        result = _run(store.defs, instance, request)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
        assert "changed since it was found ready" in failure.description
        assert _files(store.defs) == {} and _landed(store.defs) == {}
        [again] = _settled(store.defs, early.cursor).run_requests
        assert _run(store.defs, instance, again).success
    assert _count(store.defs, "shoppers") == 5


def test_a_subfolder_is_left_alone(store):
    store.put_in_subfolder("archive", SHOPPER_FILE, shoppers(2))
    store.put(PRODUCT_FILE, ONE_PRODUCT.encode())
    result = _settled(store.defs)
    assert [r.partition_key for r in result.run_requests if r.partition_key] == [PRODUCT_FILE]
    assert _files(store.defs) == {}


@pytest.mark.parametrize("store", ["local", "sftp"], indirect=True)  # an S3 bucket has no links, nor pipes
def test_a_link_is_refused_never_followed_and_the_others_go_on(store, tmp_path, dagster_home):
    secret = tmp_path / "other-brand.csv"
    secret.write_bytes((SHOPPER + SECRET).encode())
    store.link(SHOPPER_FILE, secret)
    store.fifo("STORE_V2_Acme_202401010800.csv")
    store.put(PRODUCT_FILE, ONE_PRODUCT.encode())
    result = _settled(store.defs)
    [request] = [r for r in result.run_requests if r.partition_key]
    assert request.partition_key == PRODUCT_FILE  # the others go on
    files = _files(store.defs)
    assert files[SHOPPER_FILE][0] == "refused" and "symbolic link" in files[SHOPPER_FILE][1]
    assert "named pipe" in files["STORE_V2_Acme_202401010800.csv"][1]
    with dg.DagsterInstance.get() as instance:
        assert _run(store.defs, instance, request).success
    # Asked for by name, the link is refused at landing too: nothing of the target is read.
    with pytest.raises(Exception, match="symbolic link"):
        land(store.defs.resources["warehouse"].engine, store.defs.resources["folders"].layout, store.brand,
             classify(store.brand, "main", SHOPPER_FILE))
    assert b"Secret" not in b"".join(_landed(store.defs).values())


def test_a_file_replaced_while_it_is_copied_is_not_mixed(store, monkeypatch):
    """The brand puts a new version while the pipeline reads the old: the copy is refused as
    changed, never a mix of both (the local folder's case: test_hostile_drops, a file appended to)."""
    from contextlib import contextmanager

    from bspk_pipelines.ingest.drop import copy_delivered

    store.put(SHOPPER_FILE, shoppers(2))
    layout = store.defs.resources["folders"].layout
    drop = layout.drop_store(store.brand, "main")
    reading = drop.reading

    @contextmanager
    def replaced_while_read(name):
        with reading(name) as r:
            if store.kind == "sftp":
                time.sleep(1.1)
            store.put(name, shoppers(7))
            yield r

    monkeypatch.setattr(drop, "reading", replaced_while_read)
    try:
        with pytest.raises(Changed, match="changed while it was copied"):
            copy_delivered(drop, SHOPPER_FILE, layout.data_dir.parent / "copy")
    finally:
        drop.close()
