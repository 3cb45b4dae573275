"""The options every httpx client is built with: no per-request import miss, no CA load for http."""

from __future__ import annotations

import importlib.util
import ssl
import sys

import pytest
from httpcore._synchronization import current_async_library

from device_agent.http_options import remember_missing_sniffio, tls_for


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
