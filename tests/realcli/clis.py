"""The real CLIs the suite drives: their npm packages, and a user's own setup of each.

The version of each is the `checked_version` of its shipped executor profile
(executors/<profile>.toml): the suite installs exactly the version the profile
claims to have been checked against, so the two cannot drift apart.

`user_setup` writes what a user of the CLI would have in their home — a login
(here: an API key for the loopback stub) and the CLI's own settings, with
telemetry and update checks off — and returns the environment variables the
user would have set. Nothing of it is device-agent's: the agent only adds the
Lobu tools on top, per run.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from device_agent.paths import shipped_dir

STUB_KEY = "stub-model-api-key"


@dataclass(frozen=True)
class Cli:
    profile: str  # the executor profile (= agent_kind)
    package: str  # on the npm registry
    binary: str
    api: str  # the stub it talks to (tests/realcli/stubs.py STUBS)

    @property
    def version(self) -> str:
        """The profile's `checked_version`: the version the suite installs."""
        path = shipped_dir("executors") / f"{self.profile}.toml"
        data = tomllib.loads(path.read_text(encoding="utf-8"))
        version = data.get("checked_version")
        if not isinstance(version, str) or not re.fullmatch(r"\d+(\.\d+)+", version):
            raise AssertionError(f"{path}: checked_version must be set to the CLI's version")
        return version


CLIS: dict[str, Cli] = {
    cli.profile: cli
    for cli in (
        Cli("claude-code", "@anthropic-ai/claude-code", "claude", "anthropic"),
        Cli("codex", "@openai/codex", "codex", "openai-responses"),
        Cli("gemini", "@google/gemini-cli", "gemini", "gemini"),
        Cli("opencode", "opencode-ai", "opencode", "openai-chat"),
        Cli("pi", "@mariozechner/pi-coding-agent", "pi", "openai-chat"),
    )
}


def user_setup(profile: str, home: Path, stub_url: str) -> dict[str, str]:
    """Write a user's own setup of `profile`'s CLI under `home`; the variables they set."""
    return _SETUPS[profile](home, stub_url)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def _claude(home: Path, url: str) -> dict[str, str]:
    return {
        "ANTHROPIC_BASE_URL": url,
        "ANTHROPIC_API_KEY": STUB_KEY,
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


def _codex(home: Path, url: str) -> dict[str, str]:
    # Codex ignores OPENAI_BASE_URL: a model provider of the user's own names the stub.
    _write(
        home / ".codex" / "config.toml",
        'model = "gpt-stub"\n'
        'model_provider = "stub"\n'
        "check_for_update_on_startup = false\n"
        "[model_providers.stub]\n"
        'name = "stub"\n'
        f'base_url = "{url}/v1"\n'
        'wire_api = "responses"\n'
        'env_key = "STUB_OPENAI_API_KEY"\n'
        "[analytics]\n"
        "enabled = false\n"
        "[features]\n"
        "plugins = false\n",
    )
    return {"STUB_OPENAI_API_KEY": STUB_KEY}


def _gemini(home: Path, url: str) -> dict[str, str]:
    settings = {
        "security": {"auth": {"selectedType": "gemini-api-key"}},
        "privacy": {"usageStatisticsEnabled": False},
        "telemetry": {"enabled": False},
        "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
        "model": {"name": "gemini-2.5-flash"},
    }
    _write(home / ".gemini" / "settings.json", json.dumps(settings, indent=2))
    return {"GEMINI_API_KEY": STUB_KEY, "GOOGLE_GEMINI_BASE_URL": url}


def _opencode(home: Path, url: str) -> dict[str, str]:
    config = {
        "$schema": "https://opencode.ai/config.json",
        "autoupdate": False,
        "share": "disabled",
        "permission": {"*": "ask"},
        "model": "stub/stub-model",
        "provider": {
            "stub": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Stub",
                "options": {"baseURL": f"{url}/v1", "apiKey": STUB_KEY},
                "models": {"stub-model": {"name": "Stub model", "tool_call": True}},
            }
        },
    }
    _write(home / ".config" / "opencode" / "opencode.json", json.dumps(config, indent=2))
    return {
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_SHARE": "1",
    }


def _pi(home: Path, url: str) -> dict[str, str]:
    models = {
        "providers": {
            "stub": {
                "baseUrl": f"{url}/v1",
                "api": "openai-completions",
                "apiKey": STUB_KEY,
                "models": [{"id": "stub-model"}],
            }
        }
    }
    settings = {
        "defaultProvider": "stub",
        "defaultModel": "stub-model",
        "enableInstallTelemetry": False,
    }
    _write(home / ".pi" / "agent" / "models.json", json.dumps(models, indent=2))
    _write(home / ".pi" / "agent" / "settings.json", json.dumps(settings, indent=2))
    return {"PI_OFFLINE": "1", "PI_SKIP_VERSION_CHECK": "1", "PI_TELEMETRY": "0"}


_SETUPS = {
    "claude-code": _claude,
    "codex": _codex,
    "gemini": _gemini,
    "opencode": _opencode,
    "pi": _pi,
}
