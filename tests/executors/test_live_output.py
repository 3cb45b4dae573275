"""The output tail `status` shows while a CLI runs: decoded and redacted as it comes."""

from __future__ import annotations

from device_agent.executor import LiveOutput
from device_agent.redaction import SecretValues

SECRET = "owl_pat_0123456789abcdefghij"


def shown(*chunks: bytes) -> tuple[list[str], str]:
    passed: list[str] = []
    live = LiveOutput(passed.append, SecretValues([SECRET]))
    for chunk in chunks:
        live(chunk)
    before_the_end = "".join(passed)
    live.flush()
    return passed, before_the_end


def test_a_secret_split_across_two_reads_is_never_shown() -> None:
    text = f"token is {SECRET}, done".encode()
    for split in range(1, len(text)):
        passed, _ = shown(text[:split], text[split:])
        assert SECRET not in "".join(passed)
        assert "".join(passed) == "token is [REDACTED], done"
        assert all(SECRET[:12] not in piece for piece in passed), split


def test_output_is_passed_on_as_it_comes_but_for_a_secret_long_tail() -> None:
    passed, before_the_end = shown(b"line one\n" * 10, b"line two\n")
    assert before_the_end == ("line one\n" * 10 + "line two\n")[: -(len(SECRET) - 1)]
    assert "".join(passed) == "line one\n" * 10 + "line two\n"


def test_a_character_split_across_reads_is_kept_whole() -> None:
    snowman = "☃".encode()
    passed, _ = shown(b"a" + snowman[:1], snowman[1:] + b"b")
    assert "".join(passed) == "a☃b"


def test_with_no_secrets_nothing_is_held_back() -> None:
    passed: list[str] = []
    live = LiveOutput(passed.append, SecretValues())
    live(b"at once")
    assert passed == ["at once"]
