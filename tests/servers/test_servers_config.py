"""Configuration precedence (flags > KAA_* > TOML > defaults) and every command's --help."""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from servers_harness import REPO, ServerProcess, start_main

from servers import config as cfg
from servers.__main__ import main as servers_main
from servers.control.cli import main as control_main
from servers.standalone import main as standalone_main


def _settings(argv: list[str], environ: dict[str, str] | None = None) -> cfg.Settings:
    parser = argparse.ArgumentParser()
    cfg.add_arguments(parser, cfg.OPTIONS)
    return cfg.load_settings(parser.parse_args(argv), environ=environ or {})


def test_defaults_are_kaa_ports_on_loopback() -> None:
    settings = _settings([])
    assert (settings.host, settings.bootstrap_port, settings.operations_port) == (
        "127.0.0.1",
        9888,
        9997,
    )
    assert settings.data == Path("kaa-data")
    assert settings.max_frame_size == 64 * 1024
    assert settings.replay_window_s == 120.0


def test_flags_beat_environment_beat_toml(tmp_path: Path) -> None:
    toml = tmp_path / "kaa.toml"
    toml.write_text(
        'host = "127.0.0.2"\nbootstrap_port = 1000\noperations_port = 2000\n'
        "admin_port = 3000\nlog_json = true\nreplay_window_s = 30\n"
    )
    env = {"KAA_CONFIG": str(toml), "KAA_BOOTSTRAP_PORT": "1111", "KAA_OPERATIONS_PORT": "2222"}
    settings = _settings(["--bootstrap-port", "1"], env)
    assert settings.bootstrap_port == 1  # flag
    assert settings.operations_port == 2222  # environment
    assert settings.admin_port == 3000  # TOML
    assert settings.host == "127.0.0.2"
    assert settings.log_json is True
    assert settings.replay_window_s == 30.0  # an integer in TOML is fine for a float
    assert settings.weight == 100  # default


def test_config_flag_beats_config_environment(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("weight = 7\n")
    (tmp_path / "b.toml").write_text("weight = 9\n")
    env = {"KAA_CONFIG": str(tmp_path / "a.toml")}
    assert _settings(["--config", str(tmp_path / "b.toml")], env).weight == 9
    assert _settings([], env).weight == 7


def test_a_wildcard_host_needs_an_advertised_host() -> None:
    with pytest.raises(cfg.ConfigError, match="advertise_host"):
        _settings(["--host", "0.0.0.0"])
    settings = _settings(["--host", "0.0.0.0", "--advertise-host", "10.0.0.5"])
    assert settings.public_host == "10.0.0.5"


def test_the_admin_port_has_its_own_host_and_bounds(tmp_path: Path) -> None:
    """A wildcard host for the services leaves the admin port on loopback; its host, limit
    and deadline are settings like the others (flag, KAA_*, TOML)."""
    settings = _settings(["--host", "0.0.0.0", "--advertise-host", "10.0.0.5"])
    assert (settings.admin_host, settings.admin_max_connections, settings.admin_timeout_s) == (
        "127.0.0.1",
        16,
        2.0,
    )
    toml = tmp_path / "kaa.toml"
    toml.write_text('admin_host = "10.0.0.9"\nadmin_max_connections = 4\nadmin_timeout_s = 1\n')
    env = {"KAA_CONFIG": str(toml), "KAA_ADMIN_MAX_CONNECTIONS": "8"}
    settings = _settings(["--admin-timeout-s", "0.5"], env)
    assert (settings.admin_host, settings.admin_max_connections, settings.admin_timeout_s) == (
        "10.0.0.9",
        8,
        0.5,
    )
    for argv, message in (
        (["--admin-max-connections", "0"], r"TOML admin_max_connections\) must be >= 1"),
        (["--admin-timeout-s", "0"], r"TOML admin_timeout_s\) must be > 0"),
        (["--admin-host", ""], r"TOML admin_host\) must not be empty"),
    ):
        with pytest.raises(cfg.ConfigError, match=message):
            _settings(argv)


def test_boolean_environment_values() -> None:
    assert _settings([], {"KAA_LOG_JSON": "yes"}).log_json is True
    assert _settings([], {"KAA_LOG_JSON": "0"}).log_json is False
    with pytest.raises(cfg.ConfigError, match="KAA_LOG_JSON"):
        _settings([], {"KAA_LOG_JSON": "maybe"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no_such_key = 1\n", "unknown settings no_such_key"),
        ('bootstrap_port = "9888"\n', "bootstrap_port must be an integer"),
        ("priority = 300\n", r"TOML priority\) must be 0-255"),
        ("host = \n", "cannot read"),
    ],
)
def test_bad_toml_is_refused(tmp_path: Path, text: str, message: str) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text(text)
    with pytest.raises(cfg.ConfigError, match=message):
        _settings(["--config", str(toml)])


def test_every_option_has_flag_and_environment_names() -> None:
    for key, option in cfg.OPTIONS.items():
        assert option.flag == "--" + key.replace("_", "-")
        assert option.env == "KAA_" + key.upper()
    assert set(cfg.OPTIONS) == {f.name for f in cfg.Settings.__dataclass_fields__.values()}


HELP_COMMANDS = [
    [],
    ["init"],
    ["app"],
    ["app", "create"],
    ["app", "update"],
    ["app", "list"],
    ["app", "show"],
    ["sdk"],
    ["sdk", "create"],
    ["sdk", "export"],
    ["endpoint"],
    ["endpoint", "list"],
    ["endpoint", "show"],
    ["endpoint", "revoke"],
    ["nodes"],
    ["nodes", "list"],
    ["audit"],
    ["audit", "list"],
]


@pytest.mark.parametrize("words", HELP_COMMANDS, ids=lambda w: " ".join(w) or "control")
def test_control_help(words: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        control_main([*words, "--help"])
    assert done.value.code == 0
    assert "usage: python -m servers.control" in capsys.readouterr().out


def test_services_help(capsys: pytest.CaptureFixture[str]) -> None:
    for run, needle in (
        (lambda: servers_main(["--help"]), "--operations-port"),
        (lambda: standalone_main("bootstrap", ["--help"]), "--port"),
        (lambda: standalone_main("operations", ["--help"]), "--priority"),
    ):
        with pytest.raises(SystemExit) as done:
            run()
        assert done.value.code == 0
        out = capsys.readouterr().out
        assert needle in out and "KAA_" in out


@pytest.mark.parametrize("module", ["servers", "servers.bootstrap", "servers.operations"])
def test_module_entry_points_answer_help(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", module, "--help"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert f"usage: python -m {module}" in result.stdout


def test_standalone_service_needs_an_initialized_directory(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "servers.operations", "--data", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
    )
    assert result.returncode == 1
    assert "servers.control init" in result.stderr


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_each_service_needs_only_its_own_key_and_no_key_is_ever_added(tmp_path: Path) -> None:
    """A Bootstrap machine holds bootstrap.key only, an Operations machine operations.key
    only: each service starts on its own key; init and the main job never make a second
    key beside an existing one (a new Bootstrap key is one no device trusts), and name
    the missing file instead."""
    full = tmp_path / "full"
    assert _run("servers.control", "--data", str(full), "init").returncode == 0
    for service, kept in (("servers.bootstrap", "bootstrap"), ("servers.operations", "operations")):
        half = tmp_path / f"only-{kept}"
        half.mkdir(mode=0o700)
        for name in (f"{kept}.key", f"{kept}.pub"):
            if (full / name).exists():
                (half / name).write_bytes((full / name).read_bytes())
                (half / name).chmod(0o600)
        before = sorted(p.name for p in half.iterdir())
        process = ServerProcess(service, ["--data", str(half), "--port", "0"], tmp_path, kept)
        try:
            process.wait_for_line(f"{kept} ")
        finally:
            assert process.stop() == 0, process.logs()
        for command in (("servers.control", "--data", str(half), "init"),
                        ("servers", "--data", str(half), "--bootstrap-port", "0",
                         "--operations-port", "0", "--admin-port", "-1")):
            refused = _run(*command)
            assert refused.returncode == 1, refused
            assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
            other = "operations" if kept == "bootstrap" else "bootstrap"
            assert f"{other}.key is missing" in refused.stderr
        keys_after = sorted(p.name for p in half.iterdir() if p.name.endswith(".key"))
        assert keys_after == [n for n in before if n.endswith(".key")]


def test_control_commands_without_a_key_need_none(tmp_path: Path) -> None:
    """app, sdk, endpoint, nodes and audit read the registry only: no key asked for."""
    data = tmp_path / "data"
    assert _run("servers.control", "--data", str(data), "init").returncode == 0
    (data / "bootstrap.key").unlink()
    (data / "operations.key").unlink()
    created = _run("servers.control", "--data", str(data), "--json", "app", "create", "--name", "a")
    assert created.returncode == 0, created.stderr
    for words in (("app", "list"), ("endpoint", "list"), ("nodes", "list"), ("audit", "list")):
        listed = _run("servers.control", "--data", str(data), *words)
        assert listed.returncode == 0, (words, listed.stderr)
    # A command that does use a key names the file it lacks.
    export = _run("servers.control", "--data", str(data), "bootstrap", "show")
    assert export.returncode == 1 and "bootstrap.key is missing" in export.stderr


def test_a_taken_port_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert control_main(["--data", str(data), "init"]) == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "servers.bootstrap", "--data", str(data), "--port", str(port)],
            capture_output=True,
            text=True,
            cwd=REPO,
            timeout=60,
        )
    assert result.returncode == 1
    assert result.stderr.startswith("error:") and "Traceback" not in result.stderr


def test_a_second_main_job_on_one_data_directory_is_refused(tmp_path: Path) -> None:
    """Two python -m servers on one --data: the second refuses at once with one line, and
    the first's sdk.json and listeners.json are untouched (devices built from them work)."""
    data = tmp_path / "data"
    first = start_main(data)
    try:
        sdk, listeners = (data / "sdk.json").read_bytes(), (data / "listeners.json").read_bytes()
        second = subprocess.run(
            [sys.executable, "-m", "servers", "--data", str(data), "--bootstrap-port", "0",
             "--operations-port", "0", "--admin-port", "0"],
            capture_output=True, text=True, cwd=REPO, timeout=60,
        )
        assert second.returncode == 1, second
        assert second.stderr.count("\n") == 1 and "Traceback" not in second.stderr
        assert f"(pid {first.process.proc.pid})" in second.stderr
        assert (data / "sdk.json").read_bytes() == sdk
        assert (data / "listeners.json").read_bytes() == listeners
    finally:
        assert first.process.stop() == 0, first.process.logs()
    # Once the first stopped, the directory is free again.
    again = start_main(data, name="again")
    assert again.process.stop() == 0


def test_servers_log_the_implementation_they_run(tmp_path: Path) -> None:
    """The pure-Python suite run must start pure-Python servers (KAA_WIRE_* is passed on)."""
    import kaa_wire

    process = ServerProcess(
        "servers",
        ["--data", str(tmp_path / "d"), "--bootstrap-port", "0", "--operations-port", "0",
         "--admin-port", "-1", "--log-json"],
        tmp_path,
        "impl",
    )  # fmt: skip
    try:
        process.wait_for_line("operations ")
    finally:
        process.stop()
    events = [json.loads(line) for line in process.logs().splitlines() if line.startswith("{")]
    listening = [e for e in events if e.get("event") == "listening"]
    assert listening and all(e["implementation"] == kaa_wire.IMPLEMENTATION for e in listening)
