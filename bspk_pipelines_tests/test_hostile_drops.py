"""The bad-input corpus, drop folder part: what an attacker or a careless uploader leaves there.

Links out of the folder, entries that are not files, files the pipeline may not read, files that
change after they were found ready or after they were imported. None of them stops the brand's
other files, none is read through a link, and none is lost or applied half.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from bspk_pipelines.cli.instance import QUIET
from bspk_pipelines.cli.sync import sync_brand
from bspk_pipelines.defs.ingest.sensors import load_cursor, load_cursors
from bspk_pipelines.ingest.drop import classify
from bspk_pipelines.ingest.stores import Refused
from bspk_pipelines.ingest.land import land
from bspk_pipelines_tests.builders import DROP_SENSOR, NATIVE, ONE_PRODUCT, SHOPPER, STORE, TWO_SHOPPERS, tick

SHOPPER_FILE = "SHOPPER_V3_Acme_202401010900.csv"
PRODUCT_FILE = "PRODUCT_V2_Acme_202401010901.csv"
PROJECT = Path(__file__).resolve().parent.parent


def _files(defs) -> dict[str, tuple[str, str | None]]:
    with defs.resources["warehouse"].engine.connect() as conn:
        return {r.name: (r.status, r.error) for r in conn.execute(sa.text("select name, status, error from files"))}


def _landing(defs) -> list[str]:
    folder = Path(defs.resources["folders"].data_dir) / "acme" / "landing"
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def _settled_tick(defs, cursor=None):
    """Two looks at the drop folder, as the daemon's ticks make them: the second finds files settled."""
    first = tick(defs, DROP_SENSOR, cursor)
    return tick(defs, DROP_SENSOR, first.cursor)


@pytest.mark.parametrize("target", ["another brand's file", "/proc/self/environ", "/etc/passwd"])
def test_a_link_in_the_drop_folder_is_refused_never_followed(defs_and_folder, tmp_path, target):
    defs, _, drop = defs_and_folder
    if target == "another brand's file":
        secret = tmp_path / "other-brand" / "SHOPPER_V3_Other_202401010000.csv"
        secret.parent.mkdir()
        secret.write_text(SHOPPER + "X1,Secret,Person,,,F,secret@example.com,,,,,,,,Oslo,,,NO,,,,,TRUE,FALSE\n")
        target = str(secret)
    (drop / SHOPPER_FILE).symlink_to(target)
    (drop / PRODUCT_FILE).write_text(ONE_PRODUCT)
    result = _settled_tick(defs)
    assert [r.partition_key for r in result.run_requests if r.partition_key] == [PRODUCT_FILE]  # the others go on
    status, error = _files(defs)[SHOPPER_FILE]
    assert status == "refused" and "a symbolic link" in error and "put the file itself there" in error
    assert "Secret" not in error and "root:" not in error and "PATH=" not in error  # nothing of the target shown
    assert _landing(defs) == []
    again = tick(defs, DROP_SENSOR, result.cursor)
    assert _files(defs)[SHOPPER_FILE] == (status, error)  # recorded once, looked at again quietly
    assert SHOPPER_FILE not in load_cursors(again.cursor).get("acme", load_cursor(None))["requested"].get("main", {})


def test_a_link_swapped_in_after_the_look_is_refused_at_landing(harness, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text(STORE + "S1,Store,,,,,,,,,,,,\n")
    path = harness.drop("STORE_V2_Acme_202401010000.csv", STORE)
    delivery = classify(harness.brand, "main", path.name)
    path.unlink()
    path.symlink_to(outside)
    with pytest.raises(Refused, match="a symbolic link"):
        land(harness.engine, harness.layout, harness.brand, delivery)
    assert harness.file(path.name)["status"] == "refused"
    assert not harness.layout.landed("acme", "main", path.name).exists()
    assert not list(harness.layout.landed("acme", "main", path.name).parent.glob(".*"))  # no partial copy left


def test_a_named_pipe_is_refused_without_blocking_the_look(defs_and_folder):
    defs, _, drop = defs_and_folder
    os.mkfifo(drop / SHOPPER_FILE)  # opening it for reading would wait for a writer forever
    (drop / PRODUCT_FILE).write_text(ONE_PRODUCT)
    result = _settled_tick(defs)
    assert [r.partition_key for r in result.run_requests if r.partition_key] == [PRODUCT_FILE]
    status, error = _files(defs)[SHOPPER_FILE]
    assert status == "refused" and "a named pipe, not a regular file" in error


def _without_read_override() -> list[str]:
    """A command prefix under which even root cannot read a file it has no permission for."""
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"] if os.geteuid() == 0 else []


def test_an_unreadable_file_is_refused_the_others_go_on_and_it_is_taken_once_readable(warehouse_url, tmp_path):
    data, home, mappings = tmp_path / "data", tmp_path / "home", tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "acme.yaml").write_text(json.dumps(NATIVE))  # YAML is a superset of JSON
    drop = data / "drop" / "acme"
    drop.mkdir(parents=True)
    (drop / SHOPPER_FILE).write_text(TWO_SHOPPERS)
    (drop / SHOPPER_FILE).chmod(0)
    (drop / PRODUCT_FILE).write_text(ONE_PRODUCT)
    env = os.environ | {"DAGSTER_HOME": str(home), "BSPK_DATA_DIR": str(data), "BSPK_MAPPINGS_DIR": str(mappings),
                        "BSPK_WAREHOUSE_URL": warehouse_url, "PYTHONPATH": str(PROJECT)}
    sync = [sys.executable, "-m", "bspk_pipelines.cli", "sync", "--brand", "acme", "--settle", "0.05"]
    first = subprocess.run(_without_read_override() + sync, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0 and "Traceback" not in first.stdout + first.stderr, first.stdout + first.stderr
    assert f"not taken: {SHOPPER_FILE}: refused: cannot be read (permission denied)" in first.stdout
    assert first.stdout.splitlines()[-1].split()[1:3] + first.stdout.splitlines()[-1].split()[-1:] == ["(unknown)", "1", "1"]
    engine = sa.create_engine(warehouse_url)
    with engine.connect() as conn:
        status = dict(conn.execute(sa.text("select name, status from files")).all())
        assert status == {SHOPPER_FILE: "refused", PRODUCT_FILE: "applied"}
        assert conn.execute(sa.text("select count(*) from products")).scalar() == 1
    (drop / SHOPPER_FILE).chmod(0o644)
    second = subprocess.run(sync, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stdout + second.stderr
    with engine.connect() as conn:
        assert conn.execute(sa.text("select status from files where name = :n"), {"n": SHOPPER_FILE}).scalar() == "applied"
        assert conn.execute(sa.text("select count(*) from shoppers")).scalar() == 1  # S2's country XX is a reject
    engine.dispose()


def _run(defs, instance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions("acme__main__files", [request.partition_key])
    return defs.resolve_job_def(request.job_name).execute_in_process(
        instance=instance, partition_key=request.partition_key, asset_selection=request.asset_selection,
        tags=request.tags, raise_on_error=False, run_config=QUIET)


def test_a_file_completed_after_the_ready_check_lands_whole_never_half(defs_and_folder, dagster_home):
    """The uploader paused long enough for the file to look settled, then wrote the rest: the run
    requested for the first part finds other bytes and lands nothing; the complete file lands next."""
    defs, _, drop = defs_and_folder
    rows = "".join(f"S{i},First{i},Last{i},,,F,s{i}@example.com,,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n" for i in range(202))
    complete = SHOPPER + rows
    cut = complete.rindex("\n", 0, 9000) + 1  # a clean cut: the first part is a valid file on its own
    path = drop / SHOPPER_FILE
    path.write_text(complete[:cut])
    early = _settled_tick(defs)
    [request] = early.run_requests
    with path.open("a") as f:
        f.write(complete[cut:])
    with dg.DagsterInstance.get() as instance:
        result = _run(defs, instance, request)
        assert not result.success
        failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
        assert "changed since it was found ready" in failure.description
        assert _files(defs) == {} and _landing(defs) == []  # nothing recorded, nothing landed
        [again] = _settled_tick(defs, early.cursor).run_requests  # its new size settles: requested again
        assert again.run_key != request.run_key
        assert _run(defs, instance, again).success
    with defs.resources["warehouse"].engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from shoppers")).scalar() == 202
        assert conn.execute(sa.text("select size from files")).scalar() == len(complete)


def test_a_file_rewritten_after_its_import_is_the_next_delivery_under_its_name(defs_and_folder, dagster_home):
    """An export with a fixed name, overwritten: the new bytes are a new delivery (`name@2`), landed
    beside the first and applied after it; the first delivery's record and landed copy stay."""
    defs, brand, drop = defs_and_folder
    (drop / SHOPPER_FILE).write_text(TWO_SHOPPERS)
    with dg.DagsterInstance.get() as instance:
        sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None)
        (drop / SHOPPER_FILE).write_text(TWO_SHOPPERS + "S3,Irene,Curie,,,F,irene@example.com,,,,,,,,Paris,,,FR,,,,,TRUE,FALSE\n")
        lines = []
        sync_brand(defs, brand, instance, settle_seconds=0.05, out=lines.append)
        assert any(line.startswith(f"  {SHOPPER_FILE}@2: run ") and line.endswith(" ok") for line in lines), lines
        assert f"{SHOPPER_FILE}@2" in instance.get_dynamic_partitions("acme__main__files")
    assert _files(defs) == {SHOPPER_FILE: ("applied", None), f"{SHOPPER_FILE}@2": ("applied", None)}
    assert _landing(defs) == [SHOPPER_FILE, f"{SHOPPER_FILE}@2"]
    with defs.resources["warehouse"].engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from shoppers")).scalar() == 2  # S2 is rejected (country XX)
        assert conn.execute(sa.text("select _file from shoppers where shopper_ref = 'S3'")).scalar() == f"{SHOPPER_FILE}@2"


def test_a_file_touched_is_the_same_delivery_and_rewritten_at_the_same_size_the_next(defs_and_folder, dagster_home):
    """Same bytes, a new modification time (a copy tool, `touch`): the same delivery still there.
    Then other bytes of the same size: the next delivery under the name, and nothing more after it."""
    defs, brand, drop = defs_and_folder
    path = drop / SHOPPER_FILE
    path.write_text(TWO_SHOPPERS)
    with dg.DagsterInstance.get() as instance:
        sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None)
        later = path.stat().st_mtime_ns + 10**9
        os.utime(path, ns=(later, later))
        lines = []
        assert sync_brand(defs, brand, instance, settle_seconds=0.05, out=lines.append) == []
        assert lines == [] and _files(defs) == {SHOPPER_FILE: ("applied", None)}
        path.write_text(TWO_SHOPPERS.replace("Marie", "Maria"))
        assert [r.success for r in sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None)] == [True]
        assert sync_brand(defs, brand, instance, settle_seconds=0.05, out=lambda *_: None) == []  # nothing more to run
    assert _files(defs) == {SHOPPER_FILE: ("applied", None), f"{SHOPPER_FILE}@2": ("applied", None)}
    with defs.resources["warehouse"].engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from shoppers where first_name = 'Maria'")).scalar() == 1


def test_a_file_refused_at_landing_is_taken_once_it_is_a_file_again(defs_and_folder, dagster_home):
    """Hashed at the look, swapped for a link before its run landed it, then put back exactly as it
    was (same size and time): it is requested again, not left refused for good."""
    defs, _, drop = defs_and_folder
    path = drop / SHOPPER_FILE
    path.write_text(TWO_SHOPPERS)
    as_dropped = path.stat().st_mtime_ns
    looked = _settled_tick(defs)
    [request] = looked.run_requests
    (drop / "elsewhere.csv.part").write_text(TWO_SHOPPERS)  # a .part name: never a delivery itself
    path.unlink()
    path.symlink_to(drop / "elsewhere.csv.part")
    with dg.DagsterInstance.get() as instance:
        result = _run(defs, instance, request)
        assert not result.success and _files(defs)[SHOPPER_FILE][0] == "refused"
        path.unlink()
        path.write_text(TWO_SHOPPERS)
        os.utime(path, ns=(as_dropped, as_dropped))
        [again] = _settled_tick(defs, looked.cursor).run_requests
        assert _run(defs, instance, again).success
    assert _files(defs)[SHOPPER_FILE] == ("applied", None)


def test_a_file_gone_between_the_look_and_the_read_is_not_refused(tmp_path):
    from bspk_pipelines.ingest.drop import hash_delivered
    from bspk_pipelines.ingest.stores.local import LocalFolder

    with pytest.raises(FileNotFoundError):
        hash_delivered(LocalFolder(tmp_path), SHOPPER_FILE)


def test_a_drop_folder_replaced_by_a_link_is_refused_whole(defs_and_folder, tmp_path):
    """A brand that may write one level up swaps its source folder for a link to another brand's."""
    defs, brand, drop = defs_and_folder
    other = tmp_path / "other-brand-drop"
    other.mkdir()
    (other / PRODUCT_FILE).write_text(ONE_PRODUCT)
    drop.rmdir()
    drop.symlink_to(other)
    first = tick(defs, DROP_SENSOR, None)
    second = tick(defs, DROP_SENSOR, first.cursor)
    assert second.run_requests == [] and _files(defs) == {} and _landing(defs) == []
    with pytest.raises(Refused, match="the drop folder is a symbolic link"):
        land(defs.resources["warehouse"].engine, defs.resources["folders"].layout, brand,
             classify(brand, "main", PRODUCT_FILE))
