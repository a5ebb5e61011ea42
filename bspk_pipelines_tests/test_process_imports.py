"""What each process loads: the API's (`bspk serve`) never loads Dagster, and neither does `bspk`
before it knows the command, so `bspk --help`, `bspk check-config` and `bspk entities` answer at
once. Each is checked in a fresh interpreter, where no other test has imported anything yet."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

API_PROCESS = """
import sys
import bspk_pipelines.cli.serve
from bspk_pipelines.api.app import create_app
create_app()
print(sorted(m for m in sys.modules if m.split(".")[0] == "dagster"))
"""

CLI_BEFORE_THE_COMMAND = """
import sys
import bspk_pipelines.cli
import bspk_pipelines.cli.check_config
print(sorted(m for m in sys.modules if m.split(".")[0] == "dagster"))
"""

# The whole command run, its text set aside: only the modules it loaded are printed.
ENTITIES_COMMAND = """
import contextlib, io, sys
from bspk_pipelines.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    assert main(["entities"]) == 0
assert out.getvalue().startswith("# ")
print(sorted(m for m in sys.modules if m.split(".")[0] == "dagster"))
"""


@pytest.mark.parametrize("code", [API_PROCESS, CLI_BEFORE_THE_COMMAND, ENTITIES_COMMAND], ids=["api", "cli", "entities"])
def test_process_does_not_import_dagster(tmp_path, code):
    (tmp_path / "mappings").mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "BSPK_DATA_DIR": str(tmp_path / "data"),
           "BSPK_MAPPINGS_DIR": str(tmp_path / "mappings")}
    env.pop("BSPK_WAREHOUSE_URL", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_loading_the_definitions_creates_nothing_on_disk(tmp_path):
    """A code server loading the definitions reads its settings and writes nothing: the data
    folder (and its SQLite warehouse) is made by the first run that writes, not at load."""
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    env = {**os.environ, "PYTHONPATH": str(REPO), "BSPK_DATA_DIR": str(tmp_path / "data"),
           "BSPK_MAPPINGS_DIR": str(tmp_path / "mappings")}
    env.pop("BSPK_WAREHOUSE_URL", None)
    done = subprocess.run([sys.executable, "-c", "import bspk_pipelines.definitions as d; print(len(d.defs.assets_defs_by_key))"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0 and not (tmp_path / "data").exists()
