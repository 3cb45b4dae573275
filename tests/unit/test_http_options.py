"""The options every httpx client is built with (no per-request import miss, no CA load for
http), and whether the environment names a proxy."""

from __future__ import annotations

import importlib.util
import ssl
import sys
import urllib.request

import pytest
from httpcore._synchronization import current_async_library

from device_agent.server.http_options import proxy_configured, remember_missing_sniffio, tls_for
from tests.support.servers import without_proxies


@pytest.mark.skipif(importlib.util.find_spec("sniffio") is not None, reason="sniffio installed")
def test_a_missing_sniffio_is_remembered_and_httpcore_still_sees_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(sys.modules, "sniffio", raising=False)
    remember_missing_sniffio()
    assert "sniffio" in sys.modules  # later imports fail from the cache, without a path search
    with pytest.raises(ImportError):
        import sniffio  # noqa: F401
    assert current_async_library() == "asyncio"


def test_an_installed_sniffio_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    present = object()
    monkeypatch.setitem(sys.modules, "sniffio", present)
    remember_missing_sniffio()
    assert sys.modules["sniffio"] is present


def test_plain_http_gets_a_context_that_trusts_no_certificate() -> None:
    context = tls_for("http://127.0.0.1:8787")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.cert_store_stats()["x509_ca"] == 0


def test_https_keeps_httpx_default_verification() -> None:
    assert tls_for("https://lobu.example") is True


@pytest.mark.parametrize(
    ("environment", "proxied"),
    [
        ({}, False),
        ({"https_proxy": "http://127.0.0.1:3128"}, True),
        ({"ALL_PROXY": "socks5://127.0.0.1:1080"}, True),
        ({"HTTPS_PROXY": ""}, False),  # set but empty: no proxy, as urllib reads it
        ({"NO_PROXY": "lobu.example"}, False),  # an exception list names no proxy
        ({"ftp_proxy": "http://127.0.0.1:3128"}, False),  # not for http(s)
    ],
)
def test_a_proxy_is_found_where_httpx_would_find_one(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], proxied: bool
) -> None:
    without_proxies(monkeypatch)
    monkeypatch.delenv("ftp_proxy", raising=False)
    monkeypatch.delenv("FTP_PROXY", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    assert proxy_configured() is proxied
    assert proxy_configured() is any(
        urllib.request.getproxies_environment().get(scheme) for scheme in ("http", "https", "all")
    )
