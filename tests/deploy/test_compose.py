"""deploy/compose.yaml: the service graph of one host, configuration by ADVOCASE_ settings
and secret files only, and deploy/make-secrets.sh that writes those files."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.settings import Settings
from tests.deploy.tools import DEPLOY, ROOT, docker_compose, looks_secret, run

COMPOSE = DEPLOY / "compose.yaml"
SETTING_NAMES = {f"ADVOCASE_{name.upper()}" for name in Settings.model_fields}
ADVOCASE_COMMANDS = {"migrate", "serve", "worker", "beat", "demo-data"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    """`docker compose config`: Compose's own loader (schema, interpolation, anchors)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ADVOCASE_", "COMPOSE_", "DOCKER_"))}
    return run([docker_compose(), "--file", str(path), "config", "--format", "json"],
               env=env, cwd=path.parent)


def test_compose_refuses_a_file_outside_its_schema(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    restart: unless-stopped\n",
                                                  "    restartt: unless-stopped\n", 1))
    result = compose_config(broken)
    assert result.returncode != 0
    assert "additional properties 'restartt' not allowed" in result.stderr


def test_compose_loads_the_stack_as_written(compose: dict[str, Any]) -> None:
    result = compose_config(COMPOSE)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["services"].keys() == compose["services"].keys()
    api = loaded["services"]["api"]
    assert api["image"] == "advocase:0.1.0"
    assert Path(api["build"]["context"]) == ROOT
    assert (ROOT / api["build"]["dockerfile"]) == DEPLOY / "Dockerfile"
    assert loaded["services"]["demo"]["environment"]["ADVOCASE_ENV"] == "development"
    assert loaded["services"]["worker"]["environment"]["ADVOCASE_ENV"] == "production"
    for name, secret in loaded["secrets"].items():
        assert Path(secret["file"]) == DEPLOY / "secrets" / name


def advocase_command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command if command[:1] == ["advocase"] else []


def one_shots(services: dict[str, Any]) -> set[str]:
    return {name for name, s in services.items() if s.get("restart") == "no"}


def graph_problems(services: dict[str, Any]) -> list[str]:
    """What is wrong with the service graph (empty: nothing)."""
    found = []
    by_command = {}
    for name, service in services.items():
        command = advocase_command(service)
        if command:
            by_command.setdefault(command[1], []).append(name)
    if by_command.keys() != ADVOCASE_COMMANDS:
        found.append(f"advocase commands run: {sorted(by_command)}")
    beats = by_command.get("beat", [])
    if len(beats) != 1 or any(services[b].get("deploy", {}).get("replicas", 1) != 1
                              for b in beats):
        found.append(f"beat must run exactly once: {beats}")
    (migrate,) = by_command.get("migrate", [None])
    if migrate not in one_shots(services):
        found.append("migrations are not a one-shot service")
    for role in ("serve", "worker", "beat", "demo-data"):
        for name in by_command.get(role, []):
            condition = services[name].get("depends_on", {}).get(migrate, {}).get("condition")
            if condition != "service_completed_successfully":
                found.append(f"{name} may start before the migrations finished")
    for name in by_command.get("serve", []):
        command = services[name]["command"]
        if "--workers" not in command or int(command[command.index("--workers") + 1]) < 2:
            found.append(f"{name}: fewer than 2 API processes")
    for name, service in services.items():
        if name in one_shots(services):
            continue
        check = service.get("healthcheck", {})
        if not check.get("test") or check.get("disable"):
            found.append(f"{name}: a long-running service without a health check")
    return found


def test_the_graph_check_catches_a_second_beat_and_a_missing_dependency(
        compose: dict[str, Any]) -> None:
    # Through JSON: YAML anchors make services share one depends_on mapping.
    services = json.loads(json.dumps(compose["services"]))
    services["beat-2"] = json.loads(json.dumps(services["beat"]))
    del services["worker"]["depends_on"]["migrate"]
    services["api"]["command"] = ["advocase", "serve", "--host", "0.0.0.0"]
    services["redis"]["healthcheck"] = {"disable": True}
    assert graph_problems(services) == [
        "beat must run exactly once: ['beat', 'beat-2']",
        "worker may start before the migrations finished",
        "api: fewer than 2 API processes",
        "redis: a long-running service without a health check",
    ]
    assert graph_problems(compose["services"]) == []


def test_the_stack_has_its_servers_and_one_shots(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "minio", "minio-init", "migrate", "api", "worker", "beat",
            "demo"} <= services.keys()
    assert one_shots(services) == {"minio-init", "migrate", "demo"}
    assert services["demo"]["command"] == ["advocase", "demo-data", "--skip-if-filled"]
    # The bucket the one-shot creates is the one the app is told to use.
    bucket = services["api"]["environment"]["ADVOCASE_STORAGE_URL"].split("/")[2]
    assert f"store/{bucket}" in services["minio-init"]["command"][0]
    for name in ("api", "worker", "beat", "demo"):
        assert services[name]["depends_on"]["minio-init"] == {
            "condition": "service_completed_successfully"}
    assert services["api"]["ports"] == ["127.0.0.1:8000:8000"]
    # Behind a TLS proxy, client addresses (login throttling, rate limits) come from it.
    assert services["api"]["environment"]["FORWARDED_ALLOW_IPS"] == \
        "${FORWARDED_ALLOW_IPS:-127.0.0.1}"
    for name, service in services.items():
        image = service["image"]
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        assert tag and tag != "latest", f"{name}: {image}"


def test_advocase_containers_are_locked_down(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if not advocase_command(service):
            continue
        assert service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert "/tmp" in service["tmpfs"], name
        assert service["environment"]["ADVOCASE_ENV"] == (
            "development" if name == "demo" else "production"), name


def test_configuration_is_settings_and_secret_files_only(compose: dict[str, Any]) -> None:
    secrets = compose["secrets"]
    for name, secret in secrets.items():
        assert set(secret) == {"file"}, name
        assert secret["file"] == f"./secrets/{name}", name
    assert "deploy/secrets/" in (ROOT / ".gitignore").read_text().splitlines()
    seen = set()
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        assert isinstance(environment, dict), name
        for key, value in environment.items():
            # A secret's value comes from a file; a URL may be written only without
            # credentials (the broker on the private network).
            if looks_secret(key) and not key.endswith("_FILE"):
                assert "://" in str(value) and "@" not in str(value), f"{name}: {key}"
            if key.endswith("_FILE"):
                assert value.startswith("/run/secrets/"), f"{name}: {key}"
                assert value.removeprefix("/run/secrets/") in {
                    s if isinstance(s, str) else s["target"] for s in service["secrets"]}
            if key.startswith("ADVOCASE_"):
                seen.add(key)
        for entry in service.get("secrets", []):
            source = entry if isinstance(entry, str) else entry["source"]
            assert source in secrets, f"{name}: {source}"
            target = entry if isinstance(entry, str) else entry["target"]
            if advocase_command(service):
                seen.add(target.upper())
    unknown = sorted(seen - SETTING_NAMES)
    assert unknown == [], f"not settings of app.settings.Settings: {unknown}"
    assert {"ADVOCASE_DATABASE_URL", "ADVOCASE_MASTER_KEY", "ADVOCASE_SECRET_KEY",
            "ADVOCASE_S3_ACCESS_KEY_ID", "ADVOCASE_S3_SECRET_ACCESS_KEY",
            "ADVOCASE_STORAGE_URL", "ADVOCASE_S3_ENDPOINT_URL"} <= seen


def test_make_secrets_writes_every_file_compose_reads_and_keeps_them(
        compose: dict[str, Any], tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    first = run(["bash", str(DEPLOY / "make-secrets.sh"), str(folder)])
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in folder.iterdir()) == sorted(compose["secrets"])
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    values = {p.name: p.read_text() for p in folder.iterdir()}
    for name, value in values.items():
        assert value.endswith("\n") and value.strip() and "\n" not in value.strip(), name
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o444, name
    password = values["postgres_password"].strip()
    assert len(password) >= 40
    assert values["advocase_database_url"].strip() == \
        f"postgresql://advocase:{password}@postgres:5432/advocase"
    assert len({values["advocase_master_key"], values["advocase_secret_key"],
                values["minio_root_password"], values["postgres_password"]}) == 4

    # The app reads them as its settings, as from the container's /run/secrets.
    with pytest.MonkeyPatch.context() as patch:
        for key in [k for k in os.environ if k.startswith("ADVOCASE_")]:
            patch.delenv(key)
        patch.setenv("ADVOCASE_SECRETS_DIR", str(folder))
        configured = Settings(_env_file=None, env="production", var_dir=tmp_path)  # type: ignore[call-arg]
        assert configured.master_key_value() == values["advocase_master_key"].strip()
        assert configured.database_url == \
            f"postgresql+psycopg://advocase:{password}@postgres:5432/advocase"
    again = run(["bash", str(DEPLOY / "make-secrets.sh"), str(folder)])
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_text() for p in folder.iterdir()} == values
    assert again.stdout.count("kept") == len(values)


def test_the_settings_written_in_compose_are_valid_values(
        compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in [k for k in os.environ if k.startswith("ADVOCASE_")]:
        monkeypatch.delenv(key)
    for name, service in compose["services"].items():
        if not advocase_command(service):
            continue
        values = {key.removeprefix("ADVOCASE_").lower(): value
                  for key, value in service["environment"].items()
                  if key.startswith("ADVOCASE_")}
        values["public_url"] = "http://localhost:8000"  # what ${ADVOCASE_PUBLIC_URL:-…} gives
        configured = Settings(_env_file=None, var_dir=tmp_path, s3_access_key_id="id",  # type: ignore[call-arg]
                              s3_secret_access_key="secret", **values)
        assert configured.storage_bucket_and_prefix == ("advocase", "objects"), name
        assert configured.rate_limit_storage_url == "redis://redis:6379/0", name
