"""Deployment files, checked without a cluster or a Docker engine: Kubernetes schemas,
the KEDA ScaledObject, the compose spec, the Dockerfile linter, and that every command
the manifests run exists in the CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from zart_es.cli import build_parser
from zart_es.store import Keys

pytestmark = pytest.mark.processes

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert found, f"{name} is a test dependency (pip install -e '.[test]')"
    return found


def test_kubernetes_manifests_match_the_schemas() -> None:
    files = [p for p in sorted((DEPLOY / "base").glob("*.yaml"))
             if p.name not in ("kustomization.yaml", "worker-scaledobject.yaml",
                               "redis-auth.yaml")]
    files.append(DEPLOY / "overlays" / "production" / "external-redis.yaml")
    files += [DEPLOY / "overlays" / "task-queue-gpu" / name
              for name in ("worker-gpu.yaml", "worker-gpu-pdb.yaml")]
    result = subprocess.run([_tool("kubernetes-validate"), "--strict", *map(str, files)],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed" in result.stdout + result.stderr


SCALED_OBJECTS = {  # the pool's ScaledObject -> its task queue
    DEPLOY / "base" / "worker-scaledobject.yaml": "default",
    DEPLOY / "overlays" / "task-queue-gpu" / "worker-gpu-scaledobject.yaml": "gpu",
}


@pytest.mark.parametrize("path", SCALED_OBJECTS, ids=lambda p: p.parent.name)
def test_keda_scaled_objects_are_generated_and_watch_their_task_queue(path: Path) -> None:
    schema = json.loads((DEPLOY / "schemas" / "keda-scaledobject.schema.json").read_text())
    (scaled,) = _docs(path)
    jsonschema.validate(scaled, schema)
    config = _docs(DEPLOY / "base" / "config.yaml")[0]["data"]
    keys = Keys(partitions=int(config["ZART_PARTITIONS"]))
    queue = SCALED_OBJECTS[path]
    (worker,) = [d for f in path.parent.glob("*.yaml") for d in _docs(f)
                 if d.get("kind") == "Deployment"
                 and d["metadata"]["name"] == scaled["spec"]["scaleTargetRef"]["name"]]
    args = worker["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--task-queue") + 1] == queue  # the Deployment it scales
    concurrency = int(args[args.index("--concurrency") + 1])
    triggers = scaled["spec"]["triggers"]
    if concurrency >= keys.partitions:
        # the keys we write, each twice: its backlog (lag) and its work in flight (pending)
        streams = [t["metadata"]["stream"] for t in triggers]
        assert streams == [keys.work(p, queue) for p in range(keys.partitions) for _ in (0, 1)]
    else:  # below one slot per partition: the API's sum over the partitions
        (trigger,) = triggers
        assert trigger["type"] == "metrics-api"
        assert trigger["metadata"]["url"].endswith(f"/task-queues/{queue}")
        assert trigger["metadata"]["valueLocation"] == "backlog"
        assert trigger["metadata"]["targetValue"] == str(concurrency)
        auth_schema = json.loads(
            (DEPLOY / "schemas" / "keda-triggerauthentication.schema.json").read_text())
        (auth,) = [d for f in path.parent.glob("*.yaml") for d in _docs(f)
                   if d.get("kind") == "TriggerAuthentication"]
        jsonschema.validate(auth, auth_schema)
        assert auth["metadata"]["name"] == trigger["authenticationRef"]["name"]
        assert auth["spec"]["secretTargetRef"][0]["parameter"] == "token"
    # what deploy/scaledobject.py prints, with the options its first line names
    options = path.read_text().splitlines()[0].split("(", 1)[1].split(")", 1)[0]
    argv = [] if options == "no options" else options.split()
    generated = subprocess.run(
        [sys.executable, str(DEPLOY / "scaledobject.py"), *argv],
        capture_output=True, text=True, check=True).stdout
    assert generated == path.read_text(), f"regenerate {path}: python deploy/scaledobject.py"


def test_keda_auth_and_a_broken_scaled_object() -> None:
    schema = json.loads((DEPLOY / "schemas" / "keda-scaledobject.schema.json").read_text())
    (scaled,) = _docs(DEPLOY / "base" / "worker-scaledobject.yaml")
    assert {t["authenticationRef"]["name"] for t in scaled["spec"]["triggers"]} == {
        "zart-redis"}
    auth_schema = json.loads(
        (DEPLOY / "schemas" / "keda-triggerauthentication.schema.json").read_text())
    (auth,) = _docs(DEPLOY / "base" / "redis-auth.yaml")
    jsonschema.validate(auth, auth_schema)
    assert auth["metadata"]["name"] == "zart-redis"
    broken = json.loads(json.dumps(scaled))
    broken["spec"]["triggers"][0]["metadata"]["lagCount"] = 6  # not a string
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_kustomizations_reference_existing_files() -> None:
    for kustomization in DEPLOY.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for entry in spec.get("resources", []):
            assert (kustomization.parent / entry).exists(), (kustomization, entry)
        for patch in spec.get("patches", []):
            if "path" in patch:
                assert (kustomization.parent / patch["path"]).exists(), (kustomization, patch)


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec",
         str(ROOT / "docker-compose.yml")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_lints_clean() -> None:
    result = subprocess.run([_tool("hadolint"), str(ROOT / "Dockerfile")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def _commands() -> list[list[str]]:
    found: list[list[str]] = []

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("args", "command") and isinstance(value, list):
                    found.append([str(v) for v in value])
                elif key == "test" and isinstance(value, list):
                    found.append([str(v) for v in value[1:]])  # ["CMD", ...]
                else:
                    visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    for path in [*DEPLOY.rglob("*.yaml"), ROOT / "docker-compose.yml"]:
        for doc in _docs(path):
            visit(doc)
    return found


def test_every_command_in_the_manifests_exists_in_the_cli() -> None:
    parser = build_parser()
    checked = 0
    for command in _commands():
        argv = command[1:] if command[0] == "zart-es" else command
        if argv[0] in ("redis-server", "redis-cli"):
            continue
        parser.parse_args(argv)  # exits (SystemExit) on an unknown command or option
        checked += 1
    assert checked >= 8


def test_the_image_tag_is_the_package_version() -> None:
    version = tomllib.loads((DEPLOY.parent / "pyproject.toml").read_text())["project"]["version"]
    for kustomization in (DEPLOY / "base" / "kustomization.yaml",
                          DEPLOY / "overlays" / "production" / "kustomization.yaml"):
        (image,) = _docs(kustomization)[0]["images"]
        assert image["newTag"] == version, kustomization
