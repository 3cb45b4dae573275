"""`device-agent service`: rendered files are valid, install/uninstall leave no trace.

launchctl and systemctl are replaced by a stub runner at the process boundary;
`systemd-analyze verify` checks the unit where the machine has it.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shutil
import stat
import subprocess
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import keyring
import keyring.backend
import pytest

from device_agent.cli.desktop import service_preflight
from device_agent.config import Paths, Settings
from device_agent.desktop.service import (
    LABEL,
    TRAY_LABEL,
    Launchd,
    Preflight,
    Readiness,
    ReadyWait,
    ServiceSpec,
    Systemd,
    add_arguments,
    desktop_exec,
    main,
    supervised_exit_code,
    this_program,
)

TOKEN = "owl_pat_secret_for_tests_123"


class StubRunner:
    """Records each argv; answers like a service manager that has nothing loaded yet."""

    def __init__(self, *, loaded: bool = False) -> None:
        self.calls: list[tuple[str, ...]] = []
        self.loaded = loaded
        self.answers: dict[str, subprocess.CompletedProcess[str]] = {}
        self.scripted: dict[str, list[str]] = {}  # verb -> stdout of each call, the last repeats

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(tuple(argv))
        for verb, outputs in self.scripted.items():
            if verb in argv:
                out = outputs.pop(0) if len(outputs) > 1 else outputs[0]
                return subprocess.CompletedProcess(argv, 0, out, "")
        for verb, answer in self.answers.items():
            if verb in argv:
                return answer
        if argv[:2] == ("launchctl", "print") and not self.loaded:
            return subprocess.CompletedProcess(argv, 113, "", "Could not find service")
        return subprocess.CompletedProcess(argv, 0, "", "")

    def changes(self) -> list[tuple[str, ...]]:
        """What was run, less the read-only questions."""
        return [argv for argv in self.calls if "print" not in argv and "show" not in argv]


@pytest.fixture
def program(tmp_path: Path) -> Path:
    script = tmp_path / "venv dir" / "bin" / "device-agent"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    return script


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    root = tmp_path / "agent-home"
    paths = Paths(root / "config", root / "state", root / "logs")
    paths.ensure()
    return Settings(token=TOKEN, shutdown_grace_seconds=30.0, paths=paths)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    (home / "Library").mkdir()
    (home / ".local" / "bin").mkdir(parents=True)
    return home


def make_spec(
    settings: Settings, program: Path, home: Path, *, keyring: bool = True
) -> ServiceSpec:
    return ServiceSpec.from_settings(
        settings,
        environ={"PATH": "/usr/bin:/bin:relative", "DEVICE_AGENT_HOME": "/srv/agent home"},
        argv0=str(program),
        home=home,
        keyring_usable=keyring,
    )


def snapshot(*roots: Path) -> dict[str, tuple[int, bytes]]:
    files: dict[str, tuple[int, bytes]] = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            data = path.read_bytes() if path.is_file() else b""
            files[str(path)] = (stat.S_IMODE(path.lstat().st_mode), data)
    return files


def args(
    action: str, *, dry_run: bool = False, with_tray: bool = False, force: bool = False
) -> argparse.Namespace:
    return argparse.Namespace(action=action, dry_run=dry_run, with_tray=with_tray, force=force)


# ------------------------------------------------------------------ the spec


def test_the_spec_names_this_executable_a_path_for_the_clis_and_a_stop_timeout(
    settings: Settings, program: Path, home: Path
) -> None:
    spec = make_spec(settings, program, home)
    assert spec.program == (str(program),)
    entries = spec.path.split(os.pathsep)
    assert entries[:2] == ["/usr/bin", "/bin"]
    assert str(home / ".local" / "bin") in entries
    assert str(program.parent) in entries
    assert "relative" not in entries
    assert (
        spec.stop_timeout > settings.shutdown_grace_seconds + settings.executor.kill_grace_seconds
    )
    assert spec.environment == {"DEVICE_AGENT_HOME": "/srv/agent home"}
    assert spec.env_file_token is None
    assert TOKEN not in repr(spec)


def test_run_as_a_module_the_service_runs_the_same_interpreter() -> None:
    assert this_program("/x/device_agent/__main__.py", "/venv/bin/python") == (
        "/venv/bin/python",
        "-m",
        "device_agent",
    )


def test_only_without_a_keyring_does_the_token_go_to_an_env_file(
    settings: Settings, program: Path, home: Path
) -> None:
    assert make_spec(settings, program, home, keyring=False).env_file_token == TOKEN


# ------------------------------------------------------------------ launchd


def test_the_plist_is_valid_and_has_what_launchd_needs(
    settings: Settings, program: Path, home: Path
) -> None:
    spec = make_spec(settings, program, home)
    files = Launchd(spec).files(with_tray=True)
    agent = plistlib.loads(files[LABEL].content.encode())
    assert plistlib.loads(plistlib.dumps(agent)) == agent
    assert files[LABEL].path == home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    assert agent["Label"] == LABEL
    assert agent["ProgramArguments"] == [str(program), "run"]
    assert agent["RunAtLoad"] is True
    assert agent["KeepAlive"] == {"SuccessfulExit": False}
    assert agent["ThrottleInterval"] >= 10
    assert agent["ExitTimeOut"] == spec.stop_timeout
    assert agent["ExitTimeOut"] > settings.shutdown_grace_seconds
    assert agent["StandardErrorPath"] == str(settings.paths.log_dir / "service.err.log")
    assert agent["EnvironmentVariables"] == {
        "PATH": spec.path,
        "DEVICE_AGENT_SUPERVISOR": "launchd",
        "DEVICE_AGENT_HOME": "/srv/agent home",
    }
    tray = plistlib.loads(files[TRAY_LABEL].content.encode())
    assert tray["Label"] == TRAY_LABEL
    assert tray["ProgramArguments"] == [str(program), "tray"]
    assert tray["KeepAlive"] is False
    assert all(TOKEN not in file.content for file in files.values())


@pytest.mark.skipif(shutil.which("plutil") is None, reason="plutil is macOS's")
def test_plutil_accepts_the_plist(settings: Settings, program: Path, home: Path) -> None:
    file = Launchd(make_spec(settings, program, home)).files(with_tray=False)[LABEL]
    file.path.parent.mkdir(parents=True)
    file.path.write_text(file.content)
    subprocess.run(["plutil", "-lint", str(file.path)], check=True)


def test_launchd_install_then_uninstall_leaves_the_file_system_as_it_was(
    settings: Settings, program: Path, home: Path
) -> None:
    spec = make_spec(settings, program, home)
    before = snapshot(home, settings.paths.state_dir.parent)
    runner = StubRunner()
    tray = args("install", with_tray=True)
    assert main(tray, settings, runner=runner, spec=spec, platform="darwin") == 0
    domain = f"gui/{os.getuid()}"
    plist = str(home / "Library" / "LaunchAgents" / f"{LABEL}.plist")
    assert ("launchctl", "bootstrap", domain, plist) in runner.changes()
    assert (home / "Library" / "LaunchAgents" / f"{TRAY_LABEL}.plist").exists()
    assert main(args("uninstall"), settings, runner=runner, spec=spec, platform="darwin") == 0
    assert ("launchctl", "bootout", f"{domain}/{LABEL}") in runner.changes()
    assert snapshot(home, settings.paths.state_dir.parent) == before


def test_launchd_install_twice_leaves_a_loaded_unchanged_agent_alone(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    main(args("install"), settings, runner=StubRunner(), spec=spec, platform="darwin")
    again = StubRunner(loaded=True)
    assert main(args("install"), settings, runner=again, spec=spec, platform="darwin") == 0
    assert again.changes() == []
    assert "nothing changed" in capsys.readouterr().out


def test_launchd_status_reads_launchctl_print(
    settings: Settings, program: Path, home: Path
) -> None:
    manager = Launchd(make_spec(settings, program, home), StubRunner(loaded=True))
    assert manager.status().startswith("not installed")
    manager.plist_path(LABEL).parent.mkdir(parents=True)
    manager.plist_path(LABEL).write_text("x")
    runner = StubRunner(loaded=True)
    printed = "gui/501/com.lobu.device-agent = {\n\tstate = running\n\tpid = 4242\n}\n"
    runner.answers["print"] = subprocess.CompletedProcess([], 0, printed, "")
    manager.runner = runner
    assert manager.status() == "installed, loaded (state running, pid 4242)"


def test_under_launchd_a_config_or_login_error_exits_0_so_keepalive_does_not_loop() -> None:
    launchd = {"DEVICE_AGENT_SUPERVISOR": "launchd"}
    assert [supervised_exit_code(code, launchd) for code in (0, 1, 2, 3, 4)] == [0, 1, 0, 0, 4]
    assert supervised_exit_code(2, {}) == 2


# ------------------------------------------------------------------ systemd


def unit_settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


def test_the_unit_has_what_systemd_needs(settings: Settings, program: Path, home: Path) -> None:
    spec = make_spec(settings, program, home)
    [unit] = Systemd(spec).files(with_tray=False)
    assert unit.path == home / ".config" / "systemd" / "user" / "device-agent.service"
    keys = unit_settings(unit.content)
    assert keys["Type"] == ["notify"]
    assert keys["ExecStart"] == [f'"{program}" "run"']
    assert keys["Restart"] == ["on-failure"]
    assert keys["RestartPreventExitStatus"] == ["2 3"]
    assert int(keys["TimeoutStopSec"][0]) > settings.shutdown_grace_seconds
    assert int(keys["WatchdogSec"][0]) > 0
    assert keys["Environment"] == [f'"PATH={spec.path}"', '"DEVICE_AGENT_HOME=/srv/agent home"']
    assert "EnvironmentFile" not in keys
    assert keys["WantedBy"] == ["default.target"]
    assert TOKEN not in unit.content


def test_without_a_keyring_the_token_goes_to_a_0600_env_file_only(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home, keyring=False)
    unit, _ = Systemd(spec).files(with_tray=False)
    assert unit_settings(unit.content)["EnvironmentFile"] == [str(spec.env_file)]
    assert TOKEN not in unit.content
    assert main(args("install"), settings, runner=StubRunner(), spec=spec, platform="linux") == 0
    assert stat.S_IMODE(spec.env_file.stat().st_mode) == 0o600
    assert spec.env_file.read_text() == f"DEVICE_AGENT_TOKEN={TOKEN}\n"
    capsys.readouterr()
    assert (
        main(
            args("install", dry_run=True),
            settings,
            runner=StubRunner(),
            spec=spec,
            platform="linux",
        )
        == 0
    )
    assert TOKEN not in capsys.readouterr().out


def test_paths_with_spaces_percent_and_dollar_are_quoted_for_systemd(
    settings: Settings, home: Path, tmp_path: Path
) -> None:
    odd = tmp_path / "my $HOME 100%" / "device-agent"
    spec = replace(make_spec(settings, Path("/bin/true"), home), program=(str(odd),))
    [unit] = Systemd(spec).files(with_tray=False)
    assert unit_settings(unit.content)["ExecStart"] == [
        f'"{tmp_path}/my $$HOME 100%%/device-agent" "run"'
    ]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_analyze_verify_accepts_the_unit(
    settings: Settings, program: Path, home: Path, tmp_path: Path
) -> None:
    spec = make_spec(settings, program, home, keyring=False)
    unit = Systemd(spec).files(with_tray=False)[0]
    path = tmp_path / "device-agent.service"
    path.write_text(unit.content)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert str(path) not in result.stdout + result.stderr  # no warning about our lines


def test_systemd_install_then_uninstall_leaves_the_file_system_as_it_was(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home, keyring=False)
    before = snapshot(home, settings.paths.state_dir.parent)
    runner = StubRunner()
    tray = args("install", with_tray=True)
    assert main(tray, settings, runner=runner, spec=spec, platform="linux") == 0
    assert runner.changes() == [
        ("systemctl", "--user", "daemon-reload"),
        ("systemctl", "--user", "enable", "--now", "device-agent.service"),
        ("systemctl", "--user", "try-restart", "device-agent.service"),
    ]
    autostart = home / ".config" / "autostart" / "device-agent-tray.desktop"
    assert f'Exec="{program}" tray' in autostart.read_text()
    assert "loginctl enable-linger" in capsys.readouterr().out
    assert main(args("uninstall"), settings, runner=runner, spec=spec, platform="linux") == 0
    assert ("systemctl", "--user", "disable", "--now", "device-agent.service") in runner.changes()
    assert snapshot(home, settings.paths.state_dir.parent) == before


def test_systemd_install_twice_changes_nothing_the_second_time(
    settings: Settings, program: Path, home: Path
) -> None:
    spec = make_spec(settings, program, home)
    main(args("install"), settings, runner=StubRunner(), spec=spec, platform="linux")
    unit = home / ".config" / "systemd" / "user" / "device-agent.service"
    written = unit.stat().st_mtime_ns
    again = StubRunner()
    assert main(args("install"), settings, runner=again, spec=spec, platform="linux") == 0
    assert unit.stat().st_mtime_ns == written
    assert ("systemctl", "--user", "try-restart", "device-agent.service") not in again.calls


def test_dry_run_prints_the_plan_and_changes_nothing(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    before = snapshot(home)
    runner = StubRunner()
    dry = args("install", dry_run=True, with_tray=True)
    assert main(dry, settings, runner=runner, spec=spec, platform="linux") == 0
    out = capsys.readouterr().out
    assert f"write {home}/.config/systemd/user/device-agent.service (mode 0644):" in out
    assert "    Type=notify" in out
    assert "run: systemctl --user enable --now device-agent.service" in out
    assert runner.calls == []
    assert snapshot(home) == before


def test_systemd_status_summarises_systemctl_show(
    settings: Settings, program: Path, home: Path
) -> None:
    spec = make_spec(settings, program, home)
    main(args("install"), settings, runner=StubRunner(), spec=spec, platform="linux")
    runner = StubRunner()
    shown = "ActiveState=active\nSubState=running\nMainPID=77\nExecMainStatus=0\nNRestarts=2\n"
    runner.answers["show"] = subprocess.CompletedProcess([], 0, shown, "")
    assert (
        Systemd(spec, runner).status() == "installed, active (running), pid 77, restarted 2 times"
    )


# ------------------------------------------------------------------ failures


def test_a_missing_systemctl_says_what_to_do(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError(argv[0])

    spec = make_spec(settings, program, home)
    assert main(args("install"), settings, runner=missing, spec=spec, platform="linux") == 2
    err = capsys.readouterr().err
    assert "systemctl not found" in err
    assert "device-agent run" in err


def test_a_failing_systemctl_quotes_its_error_and_says_what_to_do(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runner = StubRunner()
    runner.answers["enable"] = subprocess.CompletedProcess(
        [], 1, "", "Failed to connect to bus: No medium found\n"
    )
    spec = make_spec(settings, program, home)
    assert main(args("install"), settings, runner=runner, spec=spec, platform="linux") == 2
    err = capsys.readouterr().err
    assert "Failed to connect to bus: No medium found" in err
    assert "loginctl enable-linger" in err


def test_start_and_stop_need_an_installed_service(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    for platform in ("linux", "darwin"):
        assert main(args("start"), settings, runner=StubRunner(), spec=spec, platform=platform) == 2
        assert "run `device-agent service install`" in capsys.readouterr().err


def test_other_platforms_are_refused_with_a_way_forward(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    assert main(args("install"), settings, runner=StubRunner(), spec=spec, platform="win32") == 2
    assert "device-agent run" in capsys.readouterr().err


def test_the_tray_autostart_refuses_what_it_cannot_quote() -> None:
    assert desktop_exec(["/opt/a b/device-agent", "tray"]) == '"/opt/a b/device-agent" tray'
    with pytest.raises(Exception, match="cannot quote safely"):
        desktop_exec(["/opt/$x/device-agent", "tray"])


def test_add_arguments_gives_the_cli_one_subcommand() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser.add_subparsers())
    parsed = parser.parse_args(["service", "install", "--dry-run", "--with-tray"])
    assert (parsed.action, parsed.dry_run, parsed.with_tray) == ("install", True, True)


class PlaintextKeyring(keyring.backend.KeyringBackend):
    """Stands in for keyrings.alt's plaintext file: a "keyring" that keeps secrets in clear."""

    priority = 1  # type: ignore[assignment]

    def get_password(self, service: str, username: str) -> str | None:
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        raise AssertionError("nothing may be stored in a plaintext keyring")

    def delete_password(self, service: str, username: str) -> None:
        raise AssertionError("nothing is stored in a plaintext keyring")


PlaintextKeyring.__module__ = "keyrings.alt.file"


def test_a_plaintext_keyring_counts_as_none_as_it_does_for_the_token_store(
    settings: Settings,
) -> None:
    previous = keyring.get_keyring()
    keyring.set_keyring(PlaintextKeyring())
    try:
        with_token = replace(settings, token="owl_pat_" + "e" * 32)
        spec = ServiceSpec.from_settings(with_token, environ={"PATH": "/usr/bin"})
    finally:
        keyring.set_keyring(previous)
    assert spec.env_file_token == with_token.token  # the service gets it from the 0600 env file


# ------------------------------------------- before the install: would the agent start?

NO_SERVER = (
    "[FAIL] server: no server configured: set `server` in the config file, "
    "DEVICE_AGENT_SERVER, or pass --server URL"
)


def blocked(spec: ServiceSpec) -> Preflight:
    return Preflight(blocking=[NO_SERVER], warnings=["[FAIL] server reachable: refused"])


@pytest.mark.parametrize("dry_run", [False, True])
def test_install_refuses_with_the_failing_check_and_its_fix(
    settings: Settings,
    program: Path,
    home: Path,
    capsys: pytest.CaptureFixture[str],
    dry_run: bool,
) -> None:
    spec = make_spec(settings, program, home)
    before = snapshot(home)
    runner = StubRunner()
    code = main(
        args("install", dry_run=dry_run),
        settings,
        runner=runner,
        spec=spec,
        platform="linux",
        preflight=blocked,
    )
    assert code == 2
    printed = capsys.readouterr()
    assert "not installing the service: the agent could not start there" in printed.err
    assert f"  {NO_SERVER}" in printed.err
    assert "[FAIL] server reachable: refused" in printed.err
    assert "or install it anyway with --force" in printed.err
    assert "write " not in printed.out  # no plan either
    assert runner.calls == []
    assert snapshot(home) == before


def test_force_installs_all_the_same_and_says_what_doctor_found(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    runner = StubRunner()
    forced = args("install", force=True)
    assert (
        main(forced, settings, runner=runner, spec=spec, platform="linux", preflight=blocked) == 0
    )
    out = capsys.readouterr().out
    assert "installing anyway (--force), but doctor found:" in out
    assert NO_SERVER in out
    assert ("systemctl", "--user", "enable", "--now", "device-agent.service") in runner.calls


def test_a_clean_preflight_installs_without_a_word_about_it(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    ok = main(
        args("install"),
        settings,
        runner=StubRunner(),
        spec=spec,
        platform="linux",
        preflight=lambda spec: Preflight(),
    )
    assert ok == 0
    assert "doctor found" not in capsys.readouterr().out


def test_the_preflight_looks_with_the_services_settings_not_this_commands_flags(
    tmp_path: Path, program: Path, home: Path
) -> None:
    agent_home = tmp_path / "agent-home"
    spec = ServiceSpec.from_settings(
        Settings(paths=Paths(agent_home / "config", agent_home / "state", agent_home / "logs")),
        environ={"PATH": "/usr/bin", "DEVICE_AGENT_HOME": str(agent_home)},
        argv0=str(program),
        home=home,
        keyring_usable=True,
    )
    found = service_preflight(spec, flags=["--server"])
    assert found.blocking[0].startswith("[FAIL] server: no server configured")
    assert found.hint is not None
    assert "--server reach this command only, not the service" in found.hint
    assert not agent_home.exists()  # a dry run's checks create nothing

    (agent_home / "config").mkdir(parents=True)
    (agent_home / "config" / "config.toml").write_text('server = "http://127.0.0.1:9"\n')
    found = service_preflight(spec)
    assert any(
        line.startswith("[FAIL] token: no token for http://127.0.0.1:9") for line in found.blocking
    )


# ----------------------------------------------- after the install: did it get ready?


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def __call__(self) -> float:
        return self.now


def show(active: str, sub: str, status: int = 0) -> str:
    return f"ActiveState={active}\nSubState={sub}\nExecMainStatus={status}\n"


def test_after_install_it_waits_for_ready_and_says_so(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    runner = StubRunner()
    runner.scripted["show"] = [show("activating", "start"), show("active", "running")]
    clock = Clock()
    wait = ReadyWait(timeout=10, interval=0.5, sleep=clock.sleep, clock=clock)
    assert (
        main(args("install"), settings, runner=runner, spec=spec, platform="linux", wait=wait) == 0
    )
    out = capsys.readouterr().out
    assert "installed and started" in out
    assert "the agent is ready (active (running))" in out
    assert clock.slept == [0.5]


def test_a_service_that_does_not_get_ready_shows_its_last_log_lines(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    runner = StubRunner()
    runner.scripted["show"] = [show("failed", "failed", status=2)]
    runner.scripted["journalctl"] = [
        "Started device-agent.\ndevice-agent: configuration error: no server configured\n"
    ]
    clock = Clock()
    wait = ReadyWait(timeout=10, sleep=clock.sleep, clock=clock)
    assert (
        main(args("install"), settings, runner=runner, spec=spec, platform="linux", wait=wait) == 2
    )
    err = capsys.readouterr().err
    assert "the agent did not start (failed (failed), last exit code 2)" in err
    assert "  | device-agent: configuration error: no server configured" in err
    assert "then `device-agent service start`" in err
    assert clock.slept == []  # failed is final: no waiting
    journal = [argv for argv in runner.calls if argv[0] == "journalctl"]
    assert journal == [
        (
            "journalctl",
            "--user",
            "-u",
            "device-agent.service",
            "-n",
            "15",
            "--no-pager",
            "-o",
            "cat",
        )
    ]


def test_a_restart_pending_after_an_exit_is_not_ready(
    settings: Settings, program: Path, home: Path
) -> None:
    runner = StubRunner()
    runner.scripted["show"] = [show("activating", "auto-restart", status=1)]
    readiness = Systemd(make_spec(settings, program, home), runner).readiness()
    assert readiness.ready is False
    assert readiness.detail == "activating (auto-restart), last exit code 1"


def test_still_starting_when_the_bounded_wait_ends_is_said_not_failed(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    runner = StubRunner()
    runner.scripted["show"] = [show("activating", "start")]
    clock = Clock()
    wait = ReadyWait(timeout=3, interval=1, sleep=clock.sleep, clock=clock)
    assert (
        main(args("install"), settings, runner=runner, spec=spec, platform="linux", wait=wait) == 0
    )
    assert "still starting within 3 s (activating (start))" in capsys.readouterr().out
    assert clock.now == 3  # bounded: it stopped asking at the timeout


def test_launchd_is_ready_once_the_job_runs_and_the_agent_answers(
    settings: Settings, program: Path, home: Path
) -> None:
    spec = make_spec(settings, program, home)
    runner = StubRunner(loaded=True)
    runner.answers["print"] = subprocess.CompletedProcess(
        [], 0, "\tstate = running\n\tpid = 42\n", ""
    )
    answers = [False, True]
    launchd = Launchd(spec, runner, daemon_answers=lambda: answers.pop(0))
    assert launchd.readiness().ready is None  # running, not answering yet
    assert launchd.readiness() == Readiness(True, "state running, pid 42")

    runner.answers["print"] = subprocess.CompletedProcess(
        [], 0, "\tstate = not running\n\tlast exit code = 0\n", ""
    )
    assert launchd.readiness() == Readiness(False, "state not running, last exit code 0")
    log = settings.paths.log_dir / "service.err.log"
    log.write_text("".join(f"line {n}\n" for n in range(40)))
    assert launchd.recent_logs(3) == ["line 37", "line 38", "line 39"]


def test_start_also_says_whether_the_agent_got_ready(
    settings: Settings, program: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = make_spec(settings, program, home)
    main(args("install"), settings, runner=StubRunner(), spec=spec, platform="linux")
    runner = StubRunner()
    runner.scripted["show"] = [show("active", "running")]
    clock = Clock()
    wait = ReadyWait(timeout=10, sleep=clock.sleep, clock=clock)
    assert main(args("start"), settings, runner=runner, spec=spec, platform="linux", wait=wait) == 0
    assert "the agent is ready (active (running))" in capsys.readouterr().out
