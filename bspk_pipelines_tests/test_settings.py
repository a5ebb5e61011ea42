"""The deployment's settings: `bspk_pipelines/settings.py` is the one module that reads the
environment for the project (checked on the package's source), it reads nothing at import and
imports nothing heavy, and each variable has its default and a one-line error for a bad value."""

from __future__ import annotations

import ast
import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bspk_pipelines import settings as s
from bspk_pipelines.cli import main
from bspk_pipelines.outbound.settings import WebhookSettings
from bspk_pipelines.settings import ApiSettings, Settings, SettingError, WebhookSecurity, brand_secret

PACKAGE = Path(s.__file__).resolve().parent
REPO = PACKAGE.parent
MIB = 1024 * 1024


# --- one reader ----------------------------------------------------------------------------------

def _environment_reads(tree: ast.Module) -> list[ast.AST]:
    """Nodes of `tree` that reach the environment other than by a literal name outside BSPK_:
    `os.environ` and `os.getenv` used any other way (a name held in a variable could be a BSPK_
    one), and `environ` or `getenv` imported from `os`."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    os_names = {alias.asname or "os" for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names if alias.name == "os"}

    def literal_outside_bspk(node: ast.AST | None) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str) and not node.value.startswith("BSPK_")

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "os" and \
                any(alias.name in ("environ", "getenv") for alias in node.names):
            found.append(node)
        if not (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in os_names
                and node.attr in ("environ", "getenv")):
            continue
        use = parents.get(node)
        call = parents.get(use) if isinstance(use, ast.Attribute) and use.value is node else use
        if node.attr == "getenv" or isinstance(use, ast.Attribute) and use.value is node:  # os.getenv(...), os.environ.get(...)
            ok = isinstance(call, ast.Call) and call.func in (node, use) and literal_outside_bspk(next(iter(call.args), None))
        elif isinstance(use, ast.Subscript) and use.value is node:  # os.environ[...]
            ok = literal_outside_bspk(use.slice)
        else:  # os.environ itself: handed on, kept, a default
            ok = False
        if not ok:
            found.append(call if isinstance(call, ast.expr) else node)
    return found


def test_only_settings_reads_the_environment_for_the_project():
    """Every module but settings.py leaves the environment alone, but for variables it names
    literally that are not the project's (DAGSTER_HOME)."""
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "settings.py":
            continue
        source = path.read_text()
        for node in _environment_reads(ast.parse(source, str(path))):
            offences.append(f"{path.relative_to(REPO)}:{node.lineno}: {ast.get_source_segment(source, node)}")
    assert not offences, "read the environment through bspk_pipelines.settings:\n" + "\n".join(offences)


def test_the_source_check_finds_each_way_of_reading():
    reads = ["import os\nos.environ.get('BSPK_X')", "import os\nos.getenv('BSPK_X')", "import os\nos.environ['BSPK_X']",
             "import os\nos.environ.setdefault('BSPK_X', 'y')", "import os\nenv = os.environ", "import os\nos.environ.get(name)",
             "import os as o\no.environ.get('BSPK_X')", "from os import environ", "from os import getenv",
             "import os\ndef f(environ=os.environ): pass"]
    for code in reads:
        assert _environment_reads(ast.parse(code)), code
    assert not _environment_reads(ast.parse("import os\nos.environ.setdefault('DAGSTER_HOME', 'x')\nos.getenv('HOME')"))


PROBE = """
import importlib, os, pkgutil, sys
read = []

class Recording(dict):
    def _note(self, key):
        if str(key).startswith("BSPK_"):
            read.append(key)
    def __getitem__(self, key):
        self._note(key)
        return super().__getitem__(key)
    def get(self, key, default=None):
        self._note(key)
        return super().get(key, default)
    def __contains__(self, key):
        self._note(key)
        return super().__contains__(key)
    def setdefault(self, key, default=None):
        self._note(key)
        return super().setdefault(key, default)

os.environ = Recording(os.environ)
import bspk_pipelines
# The entry point loads the brands when Dagster imports it: that is what it is for.
skipped = {"bspk_pipelines.definitions", "bspk_pipelines.cli.__main__"}
for module in pkgutil.walk_packages(bspk_pipelines.__path__, "bspk_pipelines."):
    if module.name not in skipped:
        importlib.import_module(module.name)
print(read)
"""


def test_importing_the_package_reads_no_setting_and_writes_nothing(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "BSPK_DATA_DIR": str(tmp_path / "data"),
           "BSPK_MAPPINGS_DIR": str(tmp_path / "mappings"), "DAGSTER_HOME": str(tmp_path / "home")}
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == []


def test_settings_imports_nothing_heavy():
    code = "import sys, bspk_pipelines.settings; print(sorted(m for m in sys.modules if m.split('.')[0] in " \
           "('dagster', 'fastapi', 'sqlalchemy', 'bspk_pipelines')))"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['bspk_pipelines', 'bspk_pipelines.settings']"


# --- each variable ------------------------------------------------------------------------------

def one_line_error(read, *args) -> str:
    with pytest.raises(SettingError) as caught:
        read(*args)
    message = str(caught.value)
    assert "\n" not in message, message
    return message


def test_the_folders_and_the_warehouse_default_to_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for environ in ({}, {s.DATA_DIR: "", s.MAPPINGS_DIR: "", s.WAREHOUSE_URL: ""}):
        settings = Settings.from_env(environ)
        assert settings == Settings(tmp_path.resolve() / "data", Path("mappings"), None)
        assert settings.warehouse == f"sqlite:///{tmp_path.resolve() / 'data' / 'warehouse.sqlite'}"
    assert Settings.from_env({}, root=tmp_path) == Settings(tmp_path.resolve() / "data", tmp_path / "mappings", None)


def test_the_folders_and_the_warehouse_as_given(tmp_path):
    url = "postgresql+psycopg2://bspk:pw@db.internal:5432/warehouse"
    settings = Settings.from_env({s.DATA_DIR: str(tmp_path / "d"), s.MAPPINGS_DIR: "brands", s.WAREHOUSE_URL: url},
                                 root=tmp_path / "ignored")
    assert settings == Settings(tmp_path / "d", Path("brands"), url) and settings.warehouse == url
    for given in ("sqlite:///relative.sqlite", "sqlite://", "mssql+pyodbc://dsn", "oracle+cx_oracle://u:p@h/db"):
        assert Settings.from_env({s.WAREHOUSE_URL: given}).warehouse == given


@pytest.mark.parametrize("url", ["our-warehouse.db", "localhost:5432/db", " postgresql+psycopg2://u:hunter2@h/db"])
def test_a_warehouse_url_that_is_not_one_is_refused_without_showing_it(url):
    message = one_line_error(Settings.from_env, {s.WAREHOUSE_URL: url})
    assert message.startswith(f"{s.WAREHOUSE_URL}: expected a SQLAlchemy URL") and "postgresql+psycopg2://" in message
    assert url.strip() not in message and "hunter2" not in message


def test_the_api_limits_default_to_the_documented_values():
    assert ApiSettings.from_env({}) == ApiSettings() == ApiSettings(
        rate_limit=30, rate_window=10.0, max_upload_bytes=100 * MIB, auth_per_address=10, auth_per_key=30,
        auth_window=60.0, public_url=None)
    assert ApiSettings.from_env({name: "" for name in (s.RATE_LIMIT, s.MAX_UPLOAD_MB, s.PUBLIC_URL)}) == ApiSettings()


@pytest.mark.parametrize("name, text, field, value", [
    (s.RATE_LIMIT, "1000", "rate_limit", 1000),
    (s.RATE_WINDOW, "2.5", "rate_window", 2.5),
    (s.MAX_UPLOAD_MB, "1.5", "max_upload_bytes", round(1.5 * MIB)),
    (s.AUTH_LIMIT_PER_ADDRESS, " 3 ", "auth_per_address", 3),
    (s.AUTH_LIMIT_PER_KEY, "7", "auth_per_key", 7),
    (s.AUTH_WINDOW, "300", "auth_window", 300.0),
    (s.PUBLIC_URL, "https://api.example.com", "public_url", "https://api.example.com"),
])
def test_each_api_setting_as_given(name, text, field, value):
    assert getattr(ApiSettings.from_env({name: text}), field) == value


@pytest.mark.parametrize("name, text", [
    (s.RATE_LIMIT, "many"), (s.RATE_LIMIT, "0"), (s.RATE_LIMIT, "2.5"), (s.RATE_LIMIT, "-5"),
    (s.RATE_WINDOW, "0"), (s.RATE_WINDOW, "nan"), (s.RATE_WINDOW, "inf"), (s.RATE_WINDOW, "10s"),
    (s.MAX_UPLOAD_MB, "100MB"), (s.MAX_UPLOAD_MB, "-1"),
    (s.AUTH_LIMIT_PER_ADDRESS, "ten"), (s.AUTH_LIMIT_PER_KEY, "0"), (s.AUTH_WINDOW, "-60"), (s.AUTH_WINDOW, " "),
])
def test_a_bad_api_setting_is_one_line_naming_it_and_what_to_put_there(name, text):
    message = one_line_error(ApiSettings.from_env, {name: text})
    assert message.startswith(f"{name}: expected a ") and "above 0" in message and message.endswith(f"found {text!r}")


def test_a_public_url_that_is_not_an_origin_is_one_line_naming_it():
    assert one_line_error(ApiSettings.from_env, {s.PUBLIC_URL: "https://api.example.com/v1"}).startswith(
        f"{s.PUBLIC_URL}: expected http(s)://host[:port]")


def test_the_webhook_keys_are_required_and_split_on_spaces_and_commas():
    for missing in ({}, {s.ENCRYPTION_KEYS: ""}, {s.ENCRYPTION_KEYS: " , "}):
        message = one_line_error(WebhookSecurity.from_env, missing)
        assert message.startswith(f"{s.ENCRYPTION_KEYS} is not set: ") and message.endswith(s.MAKE_KEY)
    assert WebhookSecurity.from_env({s.ENCRYPTION_KEYS: "new, old  older"}) == WebhookSecurity(("new", "old", "older"), "")
    assert WebhookSecurity.from_env({s.ENCRYPTION_KEYS: "k", s.ALLOW_NETWORKS: "10.0.0.0/8"}).allow_networks == "10.0.0.0/8"


def test_the_webhook_settings_check_keys_and_networks_with_one_line(monkeypatch):
    """The session's keys and networks (conftest) make working settings; a bad one names its variable."""
    assert WebhookSettings.from_env().targets.refusal(ipaddress.ip_address("127.0.0.1")) is None
    monkeypatch.setenv(s.ENCRYPTION_KEYS, "not-a-key")
    message = one_line_error(WebhookSettings.from_env)
    assert message.startswith(f"{s.ENCRYPTION_KEYS}: key 1 of 1 is not a Fernet key") and "not-a-key" not in message
    monkeypatch.undo()
    monkeypatch.setenv(s.ALLOW_NETWORKS, "127.0.0.0/8 intranet")
    assert one_line_error(WebhookSettings.from_env).startswith(f"{s.ALLOW_NETWORKS}: 'intranet' is not a network")


def test_a_signing_secret_is_read_from_the_variable_named():
    assert brand_secret("ACME_HOOK", {"ACME_HOOK": "whsec_abc"}) == "whsec_abc"
    assert brand_secret("ACME_HOOK", {}) is None


# --- the commands -------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["check-config"], ["serve"], ["sync"], ["api-keys", "list", "--brand", "acme"],
                                  ["webhooks", "list"]])
def test_a_bad_setting_stops_a_command_with_its_line(args, tmp_path, monkeypatch, capsys):
    (tmp_path / "mappings").mkdir()
    monkeypatch.setenv(s.MAPPINGS_DIR, str(tmp_path / "mappings"))
    monkeypatch.setenv(s.DATA_DIR, str(tmp_path / "data"))
    monkeypatch.setenv(s.WAREHOUSE_URL, "warehouse.sqlite")
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith(f"{s.WAREHOUSE_URL}: expected"), (code, err)
    assert not (tmp_path / "data").exists()


def test_serve_stops_on_a_bad_api_limit_before_anything_listens(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(s.DATA_DIR, str(tmp_path / "data"))
    monkeypatch.delenv(s.WAREHOUSE_URL, raising=False)
    monkeypatch.setenv(s.RATE_WINDOW, "ten")
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--port", "0"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err == f"{s.RATE_WINDOW}: expected a number of seconds above 0; found 'ten'\n"
    assert not (tmp_path / "data").exists()
