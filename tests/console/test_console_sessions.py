"""The console's in-memory sessions (servers/console/auth.py): what one credential's logins
can and cannot push out."""

from __future__ import annotations

from servers.console.auth import MAX_SESSIONS, MAX_SESSIONS_PER_NAME, Sessions


def test_one_credential_logging_in_again_and_again_keeps_the_others_sessions() -> None:
    """The console review pushed an idle admin out with 1,000 read-only logins."""
    sessions = Sessions()
    admin = sessions.new("alice")
    mine = [sessions.new("rita") for _ in range(MAX_SESSIONS + 5)]
    assert sessions.get(admin.sid) == admin
    assert len(sessions) == 1 + MAX_SESSIONS_PER_NAME
    # rita keeps her newest sessions; her oldest went first
    assert all(sessions.get(s.sid) is not None for s in mine[-MAX_SESSIONS_PER_NAME:])
    assert sessions.get(mine[0].sid) is None


def test_the_bound_on_all_sessions_still_holds() -> None:
    sessions = Sessions()
    for n in range(MAX_SESSIONS + 10):
        sessions.new(f"user{n}")
    assert len(sessions) == MAX_SESSIONS
