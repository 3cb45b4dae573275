"""The output tail `status` shows while a CLI runs: decoded and redacted as it comes."""

from __future__ import annotations

from device_agent.executors.executor import LiveOutput
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


def test_output_is_passed_on_as_it_comes() -> None:
    passed, before_the_end = shown(b"thinking...\n", b"done\n")
    assert passed == ["thinking...\n", "done\n"]
    assert before_the_end == "thinking...\ndone\n"


def test_only_what_could_start_a_secret_is_held_back_until_more_comes() -> None:
    passed, before_the_end = shown(b"see owl_pa", b"rk and owl_pat_01")
    assert before_the_end == "see owl_park and "  # "owl_pa" went on once it was not one
    assert "".join(passed) == "see owl_park and owl_pat_01"  # the end: it was not one either


def test_a_character_split_across_reads_is_kept_whole() -> None:
    snowman = "☃".encode()
    passed, _ = shown(b"a" + snowman[:1], snowman[1:] + b"b")
    assert "".join(passed) == "a☃b"


def test_with_no_secrets_nothing_is_held_back() -> None:
    passed: list[str] = []
    live = LiveOutput(passed.append, SecretValues())
    live(b"at once")
    assert passed == ["at once"]
