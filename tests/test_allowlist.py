"""The allowlist settings and the once-per-interval refusal every chat transport shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.allowlist import AllowlistError, StrangerRefusals, parse_allowed_users
from storage.users import Role


def test_a_stranger_is_refused_once_per_interval_with_the_count_ignored_since() -> None:
    now = [1000.0]
    refusals = StrangerRefusals(600.0, clock=lambda: now[0])
    assert refusals.due(7) == 0  # the first message is refused
    assert refusals.due(7) is None and refusals.due(7) is None  # then ignored, counted
    assert refusals.due(8) == 0  # another stranger is refused on their own
    now[0] += 600.0
    assert refusals.due(7) == 2


def test_the_allowlist_names_the_setting_and_the_bad_entry() -> None:
    assert parse_allowed_users("1:admin, 2:TRADER,,3:viewer", "X") == {1: Role.ADMIN, 2: Role.TRADER, 3: Role.VIEWER}
    with pytest.raises(AllowlistError, match=r"^X: 'bob:admin' is not NUMERIC_ID:ROLE"):
        parse_allowed_users("bob:admin", "X")
    with pytest.raises(AllowlistError, match="user 1 is listed with two roles"):
        parse_allowed_users("1:admin,1:viewer", "X")


def test_doctor_checks_the_allowlist_as_run_will(tmp_path: Path) -> None:
    from bot.doctor import Problem, allowlist_probe
    from bot.settings import Settings

    def settings(users: str) -> Settings:
        return Settings(data_dir=tmp_path / "var", telegram_allowed_users=users, _env_file=None)  # type: ignore[call-arg]

    with pytest.raises(Problem, match=r"'abc:admin' is not NUMERIC_ID:ROLE"):
        allowlist_probe(settings("abc:admin"), "telegram")
    with pytest.raises(Problem, match=r"ALLOWED_USERS is empty and the database holds no telegram user"):
        allowlist_probe(settings(""), "telegram")
    assert allowlist_probe(settings("5:admin,6:viewer"), "telegram") == "2 listed (admin, viewer); 0 in the database"
