"""Issue 21, point 7: a SOCKS proxy in the environment, as `device-agent run` meets it —
honoured (httpx's socks extra), NO_PROXY respected, and a proxy that cannot be reached
said in one line, never "internal error"."""

from __future__ import annotations

from importlib.metadata import requires

from device_agent.errors import ExitCode
from tests.support.lab import Lab
from tests.support.servers import refused_port

VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


def proxies(**named: str) -> dict[str, str]:
    """Every proxy variable, upper and lower case: `named` ones set, the rest empty (unset,
    for httpx as for urllib)."""
    env: dict[str, str] = {}
    for name in VARIABLES:
        env[name] = env[name.lower()] = named.get(name, "")
    return env


def closed_socks_proxy() -> str:
    return f"socks5h://127.0.0.1:{refused_port()}"


def test_the_socks_extra_is_a_dependency() -> None:
    assert any(
        line.replace(" ", "").startswith("httpx[socks]") for line in requires("device-agent") or []
    )


def test_run_works_with_a_socks_proxy_named_and_the_server_in_no_proxy(lab: Lab) -> None:
    run_id = lab.state.queue_run(lab.add_watcher("Summarise the notes."))
    socks = closed_socks_proxy()
    env = proxies(ALL_PROXY=socks, HTTPS_PROXY=socks, NO_PROXY="localhost,127.0.0.1")
    result = lab.run_agent("run", "--once", **env)
    assert result.returncode == ExitCode.OK, result.stderr
    assert lab.state.run(run_id).status == "completed"


def test_an_unreachable_socks_proxy_is_one_clear_line_not_an_internal_error(lab: Lab) -> None:
    result = lab.run_agent("run", "--once", **proxies(ALL_PROXY=closed_socks_proxy()))
    assert result.returncode == ExitCode.UNREACHABLE, result.stderr
    assert "internal error" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "ALL_PROXY" in line]
    assert len(said) == 1, result.stderr
    assert "NO_PROXY" in said[0]
    assert not lab.state.requests  # nothing went around the proxy
