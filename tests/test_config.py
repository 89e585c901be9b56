"""The configuration: defaults, durations, environment, and one clear line per mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import ConfigError, load, parse_duration

ROOT = Path(__file__).resolve().parent.parent


def check(path: Path | None, *extra: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `--check-config` in a real process: exit code and what it printed."""
    args = [sys.executable, "-m", "exporter", "--check-config", *extra]
    if path is not None:
        args += ["--config", str(path)]
    result = subprocess.run(
        args,
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        check=False,
        env={"PATH": "/usr/bin:/bin", **(env or {})},
    )
    return result.returncode, result.stderr


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_the_example_config_is_valid_with_its_variable_set() -> None:
    """The shipped example passes as it is, given the key in the environment."""
    code, said = check(ROOT / "config.example.yaml", env={"INFOBIP_API_KEY": "k"})

    assert (code, said) == (0, "config ok\n")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("collector:\n  intervall: 30s\n", "config error: collector.intervall: unknown key\n"),
        (
            "collector:\n  interval: 0.5s\n",
            "config error: collector.interval: must be at least 1s and at most 1d\n",
        ),
        (
            "collector:\n  page_size: 1001\n",
            "config error: collector.page_size: Input should be less than or equal to 1000\n",
        ),
        (
            "collector:\n  initial_lookback: 3d\n",
            "config error: collector.initial_lookback: must be at least 0s and at most 2d\n",
        ),
        (
            "collector:\n  interval: soon\n",
            "config error: collector.interval: 'soon' is not a duration such as "
            "90s, 5m, 1h or 2d\n",
        ),
        (
            "collector:\n  filters:\n    general_status: LOST\n",
            "config error: collector.filters.general_status: Input should be 'ACCEPTED', "
            "'PENDING', 'UNDELIVERABLE', 'DELIVERED', 'EXPIRED' or 'REJECTED'\n",
        ),
        (
            "infobip:\n  api_key: ${NOT_SET_ANYWHERE}\n",
            "config error: infobip.api_key: environment variable NOT_SET_ANYWHERE is not set\n",
        ),
        (
            "infobip:\n  api_key: k\n",
            "config error: infobip.base_url: required (or set INFOBIP_BASE_URL, or use --demo)\n",
        ),
        (
            "infobip:\n  base_url: https://x.api.infobip.com\n",
            "config error: infobip.api_key: a credential is required: api_key, api_key_file, "
            "or username with password or password_file\n",
        ),
        (
            "infobip:\n  base_url: ftp://x\n  api_key: k\n",
            "config error: infobip.base_url: must start with https:// (or http://) "
            "and name a host\n",
        ),
        ("server:\n  listen: nine\n", "config error: server.listen: 'nine' is not HOST:PORT\n"),
        (
            "collector:\n  interval: .inf\n",
            "config error: collector.interval: inf is not a finite duration\n",
        ),
        (
            "collector:\n  page_size: true\n",
            "config error: collector.page_size: Input should be a valid integer\n",
        ),
        (
            "collector:\n  interval: 5s\n  interval: 10s\n",
            "config error: config file {path}: key 'interval' given twice (line 3)\n",
        ),
        (
            "infobip:\n  base_url: https://x.api.infobip.com/tts/3/logs\n  api_key: k\n",
            "config error: infobip.base_url: give the account's base URL, without /tts/3/logs\n",
        ),
        (
            "infobip:\n  base_url: https://x.api.infobip.com\n  api_key: k\n  username: u\n",
            "config error: infobip.api_key: give one credential: api_key, api_key_file, "
            "or username\n",
        ),
        (
            "infobip:\n  base_url: https://x.api.infobip.com\n  api_key_file: /nonexistent/k\n",
            "config error: infobip.api_key_file: cannot read /nonexistent/k: "
            "No such file or directory\n",
        ),
        (
            "collector:\n  state_path: {folder}\n",
            "config error: collector.state_path: is a folder; name a file in it, such as "
            "{folder}/state.db\n",
        ),
        (
            "- a list\n",
            "config error: config file {path}: expected a mapping of sections at the top\n",
        ),
        ("collector: [\n", "config error: config file {path}: not valid YAML at line 2\n"),
    ],
)
def test_each_mistake_is_one_line_naming_the_key_and_exit_code_2(
    tmp_path: Path, text: str, line: str
) -> None:
    """A typo is an error, not a silent default."""
    path = write(tmp_path, text.replace("{folder}", str(tmp_path)))

    code, said = check(path)

    expected = line.replace("{path}", str(path)).replace("{folder}", str(tmp_path))
    assert (code, said) == (2, expected)


@pytest.mark.parametrize(
    ("content", "line"),
    [
        (b"# caf\xe9\ncollector: {}\n", "not UTF-8 text (at offset 5)"),
        (b"\x00" * (2 << 20), "larger than 1 MiB; is it the right file?"),
    ],
)
def test_a_file_that_is_not_a_config_is_one_line_not_a_traceback(
    tmp_path: Path, content: bytes, line: str
) -> None:
    """Latin-1 text, binary junk or a huge file: one line, exit code 2."""
    path = tmp_path / "config.yaml"
    path.write_bytes(content)

    assert check(path) == (2, f"config error: config file {path}: {line}\n")


def test_an_empty_key_file_is_a_config_error(tmp_path: Path) -> None:
    """An empty Secret would only show up as 401s later; say it now."""
    key = tmp_path / "key"
    key.write_text("\n")
    path = write(
        tmp_path, f"infobip:\n  base_url: https://x.api.infobip.com\n  api_key_file: {key}\n"
    )

    assert check(path) == (2, f"config error: infobip.api_key_file: {key} is empty\n")


def test_a_missing_config_file_is_a_config_error(tmp_path: Path) -> None:
    """The path is named in the one line."""
    code, said = check(tmp_path / "nope.yaml")

    assert (code, said) == (
        2,
        f"config error: config file {tmp_path / 'nope.yaml'}: No such file or directory\n",
    )


def test_the_demo_needs_no_config_at_all() -> None:
    """`--demo` alone is valid: the simulator supplies URL and key."""
    assert check(None, "--demo") == (0, "config ok\n")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("2d", 172800.0),
        ("250ms", 0.25),
        (45, 45.0),
        ("30", 30.0),
        (1.5, 1.5),
    ],
)
def test_durations_read_in_their_units(text: object, seconds: float) -> None:
    """`90s`, `5m`, `1h`, `2d` or a number of seconds."""
    assert parse_duration(text) == seconds


def test_defaults_fill_every_key_but_url_and_credential(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The contract's defaults, and the environment's place in the file."""
    monkeypatch.setenv("KEY_FOR_TEST", "s3cret")
    path = write(
        tmp_path,
        "infobip:\n  base_url: https://a.api.infobip.com\n  api_key: pre-${KEY_FOR_TEST}\n",
    )

    config = load(path)

    assert config.infobip.api_key == "pre-s3cret"
    assert config.infobip.timeout == 10.0
    assert (config.collector.interval, config.collector.page_size) == (60.0, 1000)
    assert (config.collector.initial_lookback, config.collector.state_path) == (3600.0, "")
    assert config.collector.filters.as_params() == {}
    assert config.server.listen == "0.0.0.0:9877"


def test_the_base_url_variable_overrides_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """INFOBIP_BASE_URL wins over infobip.base_url."""
    monkeypatch.setenv("INFOBIP_BASE_URL", "https://override.api.infobip.com")
    path = write(tmp_path, "infobip:\n  base_url: https://a.api.infobip.com\n  api_key: k\n")

    assert load(path).infobip.base_url == "https://override.api.infobip.com"


def test_filters_become_the_api_parameter_names(tmp_path: Path) -> None:
    """`general_status` in YAML is `generalStatus` for the API, as the poller sends it."""
    path = write(
        tmp_path,
        "infobip: {base_url: 'https://a.api.infobip.com', api_key: k}\n"
        "collector:\n  filters: {from: '41793026700', general_status: DELIVERED, mcc: '228'}\n",
    )

    assert load(path).collector.filters.as_params() == {
        "from": "41793026700",
        "general_status": "DELIVERED",
        "mcc": "228",
    }


def test_a_config_error_from_the_loader_is_a_config_error(tmp_path: Path) -> None:
    """The library raises one exception type for every problem."""
    with pytest.raises(ConfigError, match=r"^collector\.overlap: "):
        load(write(tmp_path, "collector:\n  overlap: -1s\n"), demo=True)
