"""The Dockerfile lints clean, and its build steps, replayed outside Docker, give a working image.

No Docker engine is needed: the builder stage's RUN steps are read from the Dockerfile and run
in a scratch directory that stands in for the image's root, with the build context cut down by
.dockerignore the way Docker cuts it. The final stage's files are laid out the same way, and
the image's own ENTRYPOINT and CMD are then run from there.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import exporter
from tests.procs import running_exporter

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[Instruction] = field(default_factory=list)

    def arguments_of(self, keyword: str) -> list[str]:
        return [step.arguments for step in self.instructions if step.keyword == keyword]


def read_stages(text: str) -> list[Stage]:
    """Split a Dockerfile into stages of instructions, joining continued lines."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.endswith("\\"):
            pending += line[:-1]
            continue
        logical.append(pending + line)
        pending = ""

    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.strip().partition(" ")
        keyword = keyword.upper()
        arguments = " ".join(arguments.split()) if keyword != "RUN" else arguments.strip()
        if keyword == "FROM":
            words = arguments.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else ""
            stages.append(Stage(base=words[0], name=name))
        else:
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


def ignore_pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as a regex: `*` stays inside a segment, `**` spans segments."""
    parts = []
    for segment in pattern.strip("/").split("/"):
        if segment == "**":
            parts.append("(?:[^/]+/)*")
            continue
        regex = "".join(
            "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
            for char in segment
        )
        parts.append(regex.replace(r"\[", "[").replace(r"\]", "]") + "/")
    return re.compile("".join(parts)[:-1] if parts[-1].endswith("/") else "".join(parts))


def in_context(relative: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    segments = relative.split("/")
    prefixes = ["/".join(segments[: end + 1]) for end in range(len(segments))]
    included = True
    for keep, regex in rules:
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            included = keep
    return included


def build_context(destination: Path) -> Path:
    """Copy the repository's files that .dockerignore lets into the build context."""
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            keep = line.startswith("!")
            rules.append((keep, ignore_pattern(line.lstrip("!").strip())))

    for path in sorted(ROOT.rglob("*")):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and in_context(relative, rules):
            target = destination / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    return destination


class FakeImage:
    """A directory standing in for an image's root, filled by replaying Dockerfile steps."""

    def __init__(self, root: Path, context: Path) -> None:
        self.root = root
        self.context = context
        self.env: dict[str, str] = {}
        self.workdir = root

    def inside(self, path: str) -> Path:
        return self.root / path.lstrip("/") if path.startswith("/") else self.workdir / path

    def expand(self, value: str) -> str:
        """Substitute variables set so far; the base image's own (PATH) come from the host."""

        def lookup(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            return self.env[name] if name in self.env else os.environ[name]

        return VARIABLE.sub(lookup, value)

    def apply_env(self, arguments: str) -> None:
        for pair in shlex.split(arguments):
            name, _, value = pair.partition("=")
            literal = str(self.inside(value)) if value.startswith("/") else value
            self.env[name] = self.expand(literal)

    def apply_workdir(self, arguments: str) -> None:
        self.workdir = self.inside(arguments)
        self.workdir.mkdir(parents=True, exist_ok=True)

    def apply_copy(self, arguments: str) -> None:
        *sources, destination = shlex.split(arguments)
        target = self.inside(destination)
        for source in sources:
            origin = self.context / source
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            elif destination.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target)

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        interpreter_dir = str(Path(sys.executable).parent)
        env = {**os.environ, "PATH": f"{interpreter_dir}{os.pathsep}{os.environ['PATH']}"}
        env.pop("PYTHONPATH", None)
        return subprocess.run(
            ["/bin/sh", "-c", command],
            cwd=self.workdir,
            env={**env, **self.env},
            capture_output=True,
            text=True,
            timeout=240,
        )


def dockerfile_stages() -> tuple[Stage, Stage]:
    stages = read_stages(DOCKERFILE.read_text())
    builder = next(stage for stage in stages if stage.name == "builder")
    return builder, stages[-1]


def test_hadolint_finds_nothing_to_report_in_the_dockerfile() -> None:
    """hadolint, at its strictest default threshold, passes the Dockerfile without a word."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"

    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )

    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_image_is_two_python_slim_stages_whose_final_stage_takes_only_the_venv() -> None:
    """Both stages start from python:3.11-slim; the final one copies the venv and two files."""
    builder, final = dockerfile_stages()

    copies = final.arguments_of("COPY")

    assert (builder.base, final.base) == ("python:3.11-slim", "python:3.11-slim")
    assert copies == [
        "--from=builder /opt/infobip-voice-exporter /opt/infobip-voice-exporter",
        "deploy/docker/config.yaml /etc/infobip-voice-exporter/config.yaml",
    ]


def test_the_image_runs_as_a_numeric_user_and_serves_the_contract_port() -> None:
    """USER is 10001:10001, EXPOSE is 9877, and the entry point is the console script."""
    _, final = dockerfile_stages()

    settings = {
        keyword: final.arguments_of(keyword) for keyword in ("USER", "EXPOSE", "ENTRYPOINT", "CMD")
    }

    assert settings == {
        "USER": ["10001:10001"],
        "EXPOSE": ["9877"],
        "ENTRYPOINT": ['["infobip-voice-exporter"]'],
        "CMD": ['["--config", "/etc/infobip-voice-exporter/config.yaml"]'],
    }


def healthcheck_command() -> list[str]:
    _, final = dockerfile_stages()
    (healthcheck,) = final.arguments_of("HEALTHCHECK")
    return json.loads(healthcheck.partition("CMD ")[2])


def test_the_healthcheck_passes_against_a_running_exporter() -> None:
    """The HEALTHCHECK's python one-liner exits 0 when /healthz answers on its address."""
    command = healthcheck_command()

    with running_exporter(["--demo"]) as running:
        address = running.base_url.removeprefix("http://")
        code = command[2].replace("127.0.0.1:9877", address)
        result = subprocess.run(
            [sys.executable, command[1], code], capture_output=True, text=True, timeout=30
        )

    assert command[:2] == ["python", "-c"]
    assert "'http://127.0.0.1:9877/healthz'" in command[2]
    assert (result.returncode, result.stderr) == (0, "")


def test_the_healthcheck_fails_with_exit_1_when_nothing_answers() -> None:
    """Docker reads exit 1 as unhealthy (2 is reserved): a refused connection must give 1."""
    command = healthcheck_command()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{probe.getsockname()[1]}"

    result = subprocess.run(
        [sys.executable, command[1], command[2].replace("127.0.0.1:9877", closed)],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 1
    assert "ConnectionRefusedError" in result.stderr


def test_the_builder_steps_name_no_absolute_path_so_they_can_be_replayed() -> None:
    """Every path in a RUN step is relative to WORKDIR or spelled through an ENV variable."""
    builder, _ = dockerfile_stages()

    absolute = [
        word
        for command in builder.arguments_of("RUN")
        for word in shlex.split(command)
        if word.startswith("/")
    ]

    assert absolute == []


def test_dockerignore_leaves_only_the_files_the_build_copies_in_the_context(
    tmp_path: Path,
) -> None:
    """The context holds the package, its metadata and the baked config, and nothing else."""
    context = build_context(tmp_path / "context")

    files = {path.relative_to(context).as_posix() for path in context.rglob("*") if path.is_file()}
    package = {
        path.relative_to(ROOT).as_posix()
        for path in (ROOT / "exporter").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    expected = {"pyproject.toml", "README.md", "deploy/docker/config.yaml"} | package

    assert files == expected


@pytest.mark.timeout(300)
def test_the_builder_steps_install_a_venv_whose_console_script_checks_the_baked_config(
    tmp_path: Path,
) -> None:
    """The replayed RUN steps give a console script that accepts the baked and example configs."""
    builder, final = dockerfile_stages()
    image = FakeImage(tmp_path / "root", build_context(tmp_path / "context"))
    steps = {"ENV": image.apply_env, "WORKDIR": image.apply_workdir, "COPY": image.apply_copy}

    for step in builder.instructions:
        if step.keyword == "RUN":
            result = image.run(step.arguments)
            assert result.returncode == 0, result.stdout + result.stderr
        else:
            steps[step.keyword](step.arguments)
    image.env, image.workdir = {}, image.root
    for step in final.instructions:
        if step.keyword in ("ENV", "WORKDIR"):
            steps[step.keyword](step.arguments)
        elif step.keyword == "COPY" and not step.arguments.startswith("--from=builder"):
            image.apply_copy(step.arguments)
    entrypoint = json.loads(final.arguments_of("ENTRYPOINT")[0])
    cmd = [
        str(image.inside(word)) if word.startswith("/") else word
        for word in json.loads(final.arguments_of("CMD")[0])
    ]
    script = shutil.which(entrypoint[0], path=image.env["PATH"])
    image.env |= {"INFOBIP_BASE_URL": "https://xxxxx.api.infobip.com", "INFOBIP_API_KEY": "k"}
    version = image.run(shlex.join([*entrypoint, "--version"]))
    check = image.run(shlex.join([*entrypoint, *cmd, "--check-config"]))
    example = ROOT / "config.example.yaml"
    check_example = image.run(shlex.join([*entrypoint, "--check-config", "--config", str(example)]))

    assert script == str(image.inside("/opt/infobip-voice-exporter/bin/infobip-voice-exporter"))
    assert (version.returncode, version.stdout) == (
        0,
        f"infobip-voice-exporter {exporter.__version__}\n",
    )
    assert (check.returncode, check.stderr) == (0, "config ok\n")
    assert (check_example.returncode, check_example.stderr) == (0, "config ok\n")
