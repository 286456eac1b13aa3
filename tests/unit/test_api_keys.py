"""API keys are re-read by content and a missing key file lets nobody in."""

from __future__ import annotations

import logging
import os

import pytest

from services.common import auth


def line(name: str, key: str) -> str:
    return f"{name}:{auth.digest(key)}\n"


def test_keys_rotate_by_content_and_a_deleted_file_refuses_everyone(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setattr(auth, "RELOAD_CHECK_SECONDS", -1.0)  # check the file at every call
    path = tmp_path / "keys"
    path.write_text(line("alice", "key-a"))
    stamp = os.stat(path).st_mtime_ns
    keys = auth.ApiKeys(str(path))
    assert keys.name_of("key-a") == "alice"

    path.write_text(line("bob", "key-b"))  # rotated within the same timestamp
    os.utime(path, ns=(stamp, stamp))
    assert keys.name_of("key-b") == "bob" and keys.name_of("key-a") is None

    path.unlink()
    with caplog.at_level(logging.ERROR, logger="auth"):
        assert keys.name_of("key-b") is None and keys.name_of("key-b") is None
    assert [r.getMessage() for r in caplog.records].count(
        "API key file unreadable: every key is refused until it is back") == 1  # logged once, not per call

    path.write_text(line("bob", "key-b"))
    assert keys.name_of("key-b") == "bob"


@pytest.mark.parametrize("content", ["", "# only a comment\n", "not-a-line\n"])
def test_a_file_without_keys_lets_nobody_in(tmp_path, content: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    assert auth.ApiKeys(str(path)).name_of("anything") is None
