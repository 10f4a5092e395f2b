#!/usr/bin/env python3
"""The environment a rendered overlay gives the service's containers, to run commands in it.

    rendered_env.py OVERLAY --kubectl PATH --values FILE --secrets FILE [--unset VAR]
                    [--container NAME] [-- COMMAND...]

renders deploy/overlays/OVERLAY with FILE in place of its operator-values.env (a copy of deploy/
in a temporary directory: the repository is never changed), resolves the container's env exactly
as the kubelet would (envFrom ConfigMaps, env values, configMapKeyRef, secretKeyRef from the
test secrets FILE, fieldRef metadata.name), writes its ConfigMap and Secret volumes under a
temporary root and points env values below a mount path there, then runs COMMAND with that
environment and nothing else from the caller's (PATH and HOME excepted); without COMMAND it
prints the filled-in render. .ci/deploy-checks runs
`overdue-notifier config check` through it on every overlay; tests/deploy imports it.

Secrets FILE is YAML: {secret name: {key: value}}. Keys a mounted Secret has no value for are
not written (the command then sees a missing file, as with an optional Secret).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
Doc = dict[str, Any]
Secrets = Mapping[str, Mapping[str, str]]

__all__ = ["container", "container_env", "materialise_volumes", "read_env_file", "render"]


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a kustomize env file (comments and blank lines skipped)."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def render(overlay: str, *, kubectl: str, values: Path | None = None) -> list[Doc]:
    """`kubectl kustomize deploy/overlays/OVERLAY`, with `values` as its operator-values.env.

    The values file must name exactly the keys of the shipped one: a test or check that
    forgot a newly required value would otherwise render a placeholder without noticing.
    """
    with tempfile.TemporaryDirectory() as tmp:
        deploy = Path(tmp) / "deploy"
        shutil.copytree(REPO / "deploy", deploy, ignore=shutil.ignore_patterns("__pycache__"))
        if values is not None:
            target = deploy / "overlays" / overlay / "operator-values.env"
            shipped, given = set(read_env_file(target)), set(read_env_file(values))
            if shipped != given:
                raise SystemExit(
                    f"{values}: keys differ from {overlay}/operator-values.env: "
                    f"missing {sorted(shipped - given)}, unknown {sorted(given - shipped)}"
                )
            shutil.copyfile(values, target)
        out = subprocess.run(  # noqa: S603  (kubectl of the caller's choosing, no shell)
            [kubectl, "kustomize", str(deploy / "overlays" / overlay)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def _one(docs: list[Doc], kind: str, name: str) -> Doc:
    found = [
        d
        for d in docs
        if d.get("kind") == kind
        and (d["metadata"]["name"] == name or d["metadata"]["name"].startswith(name + "-"))
    ]
    if len(found) != 1:
        raise LookupError(f"expected one {kind} named {name}, found {len(found)}")
    return found[0]


def container(docs: list[Doc], name: str = "notifier") -> Doc:
    """The container (or initContainer) `name` of the one Deployment."""
    (dep,) = [d for d in docs if d.get("kind") == "Deployment"]
    pod = dep["spec"]["template"]["spec"]
    for c in [*pod.get("initContainers", []), *pod["containers"]]:
        if c["name"] == name:
            return dict(c)
    raise LookupError(f"no container {name}")


def _secret(secrets: Secrets, name: str, key: str, optional: bool) -> str | None:
    value = secrets.get(name, {}).get(key)
    if value is None and not optional:
        raise LookupError(f"test secrets lack {name}/{key}, which the container requires")
    return value


def container_env(
    docs: list[Doc], c: Doc, *, secrets: Secrets, pod_name: str = "overdue-notifier-0"
) -> dict[str, str]:
    """The container's environment as the kubelet builds it (env wins over envFrom)."""
    env: dict[str, str] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_one(docs, "ConfigMap", source["configMapRef"]["name"]).get("data", {}))
        elif "secretRef" in source:
            env.update(secrets.get(source["secretRef"]["name"], {}))
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        value: str | None
        if "secretKeyRef" in ref:
            r = ref["secretKeyRef"]
            value = _secret(secrets, r["name"], r["key"], bool(r.get("optional")))
        elif "configMapKeyRef" in ref:
            r = ref["configMapKeyRef"]
            value = _one(docs, "ConfigMap", r["name"]).get("data", {}).get(r["key"])
        elif ref.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            value = pod_name
        else:
            raise LookupError(f"{item['name']}: unsupported valueFrom {ref}")
        if value is not None:
            env[item["name"]] = value
    return env


def materialise_volumes(
    docs: list[Doc], c: Doc, root: Path, *, secrets: Secrets
) -> dict[str, Path]:
    """Write the container's ConfigMap/Secret/emptyDir volumes under root; mount path -> dir."""
    (dep,) = [d for d in docs if d.get("kind") == "Deployment"]
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"].get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in c.get("volumeMounts", []):
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        volume = volumes[mount["name"]]
        files: dict[str, str] = {}
        source: Mapping[str, Any] = {}
        data: Mapping[str, str] = {}
        if "configMap" in volume:
            source = volume["configMap"]
            data = _one(docs, "ConfigMap", source["name"]).get("data", {})
        elif "secret" in volume:
            source = volume["secret"]
            data = secrets.get(source["secretName"], {})
        items = source.get("items")
        if items:  # as the kubelet does: only the listed keys, each at its path
            files = {i["path"]: data[i["key"]] for i in items if i["key"] in data}
        else:
            files = dict(data)
        for rel, content in files.items():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            (target / rel).write_text(content, encoding="utf-8")
        mounts[mount["mountPath"]] = target
    return mounts


def relocate(env: Mapping[str, str], mounts: Mapping[str, Path]) -> dict[str, str]:
    """env with every value below a mount path pointed at where that volume was written."""
    out = dict(env)
    for key, value in env.items():
        for mount_path, local in mounts.items():
            if value == mount_path or value.startswith(mount_path.rstrip("/") + "/"):
                out[key] = str(local) + value[len(mount_path.rstrip("/")) :]
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("overlay")
    parser.add_argument("--kubectl", required=True)
    parser.add_argument("--values", type=Path, required=True)
    parser.add_argument("--secrets", type=Path, required=True)
    parser.add_argument("--container", default="notifier")
    parser.add_argument("--unset", action="append", default=[])
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[1:split])
    command = argv[split + 1 :]
    docs = render(args.overlay, kubectl=args.kubectl, values=args.values)
    if not command:  # no command: print the render with the values filled in
        yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
        return 0
    secrets = yaml.safe_load(args.secrets.read_text(encoding="utf-8"))
    c = container(docs, args.container)
    with tempfile.TemporaryDirectory() as tmp:
        mounts = materialise_volumes(docs, c, Path(tmp), secrets=secrets)
        env = relocate(container_env(docs, c, secrets=secrets), mounts)
        for var in args.unset:
            env.pop(var, None)
        env.update({k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ})
        # The command is the caller's own (this is a runner), without a shell.
        return subprocess.run(command, env=env, check=False).returncode  # noqa: S603


if __name__ == "__main__":
    sys.exit(main(sys.argv))
