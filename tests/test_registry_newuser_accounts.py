"""Issue 14, item 8 (server side): removing owners, listing and revoking one's tokens, listing users.

`DELETE /api/v1/packages/{name}/owners/{user}` (owners only, never the last owner),
`GET /api/v1/tokens` and `DELETE /api/v1/tokens/{id}` (one's own tokens only, never a
secret), and `nnpm registry user list`. In process (tests/inprocess.py), on both backends.
"""

from __future__ import annotations

import re

from cli import run_nnpm
from protocol import assert_error


def test_owners_remove_each_other_but_never_the_last_one(api, small_package) -> None:
    alice, bob, carol = api.add_user("alice"), api.add_user("bob"), api.add_user("carol")
    assert api.publish(small_package("shared"), alice).status_code == 201
    with api.client(alice) as c:
        assert c.put("/api/v1/packages/shared/owners/bob").json() == {"owners": ["alice", "bob"]}
    with api.client(carol) as c:
        assert_error(c.delete("/api/v1/packages/shared/owners/alice"), 403, "forbidden", "carol")
    with api.client() as c:
        assert_error(c.delete("/api/v1/packages/shared/owners/alice"), 401, "unauthorized")
    with api.client(bob) as c:
        assert_error(c.delete("/api/v1/packages/shared/owners/nobody"), 404, "not_found", "nobody")
        assert_error(c.delete("/api/v1/packages/shared/owners/carol"), 404, "not_found", "carol", "not an owner")
        assert_error(c.delete("/api/v1/packages/nothing/owners/alice"), 404, "not_found", "nothing")
        assert c.delete("/api/v1/packages/Shared/owners/ALICE").json() == {"owners": ["bob"]}
        body = assert_error(c.delete("/api/v1/packages/shared/owners/bob"), 409, "conflict", "last owner")
        assert body["hint"] and "owner add" in body["hint"]
        assert c.get("/api/v1/packages/shared/owners").json() == {"owners": ["bob"]}
    assert api.publish(small_package("shared", "1.1.0"), alice).status_code == 403  # alice is no owner now


def test_users_list_and_revoke_their_own_tokens_and_see_no_secret(api) -> None:
    first, second = api.add_user("alice"), api.add_user("alice")
    bob = api.add_user("bob")
    with api.client(first) as c:
        tokens = c.get("/api/v1/tokens").json()["tokens"]
    assert len(tokens) == 2
    assert [set(t) for t in tokens] == [{"id", "created_at", "last_used_at", "prefix", "current"}] * 2
    by_current = {t["current"]: t for t in tokens}
    assert by_current[True]["prefix"] == first[:9] and by_current[False]["prefix"] == second[:9]
    assert by_current[True]["last_used_at"] is not None and by_current[False]["last_used_at"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", by_current[True]["created_at"])
    hashes = [row[0] for row in api.query("SELECT token_sha256 FROM tokens")]
    shown = repr(tokens)
    assert not any(secret in shown for secret in [first, second, bob, first[9:], *hashes])
    with api.client(bob) as c:
        (bobs,) = c.get("/api/v1/tokens").json()["tokens"]
        assert_error(c.delete(f"/api/v1/tokens/{by_current[False]['id']}"), 404, "not_found")
        assert_error(c.delete("/api/v1/tokens/999999"), 404, "not_found")
        assert_error(c.delete("/api/v1/tokens/abc"), 400, "invalid_manifest")
    with api.client(first) as c:
        assert c.delete(f"/api/v1/tokens/{by_current[False]['id']}").json() == {"revoked": by_current[False]["id"]}
        assert [t["id"] for t in c.get("/api/v1/tokens").json()["tokens"]] == [by_current[True]["id"]]
    with api.client(second) as c:
        assert_error(c.get("/api/v1/whoami"), 401, "unauthorized")
    with api.client(bob) as c:
        assert c.get("/api/v1/whoami").json() == {"user": "bob"} and bobs["current"] is True
    with api.client() as c:
        assert_error(c.get("/api/v1/tokens"), 401, "unauthorized")
    with api.client(first) as c:  # revoking the token in use works too: it is the server side of a logout
        assert c.delete(f"/api/v1/tokens/{by_current[True]['id']}").status_code == 200
        assert_error(c.get("/api/v1/whoami"), 401, "unauthorized")


def test_registry_user_list_shows_every_user_and_their_tokens(api, small_package, tmp_path) -> None:
    alice = api.add_user("alice")
    api.add_user("alice")
    api.add_user("Bob")
    assert api.publish(small_package("owned"), alice).status_code == 201
    with api.client(alice) as c:
        c.get("/api/v1/whoami")
    proc = run_nnpm(tmp_path / "home", "registry", "user", "list", "--data", api.data_dir,
                    "--database-url", api.database_url)
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["user", "tokens", "last", "used", "packages", "created"], proc.stdout
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {"alice", "Bob"}
    assert rows["alice"][1:3] == ["2", rows["alice"][2]] and rows["alice"][3] == "1"
    assert rows["Bob"][1:4] == ["1", "never", "0"]
    assert alice not in proc.stdout and alice[9:] not in proc.stdout
    missing = run_nnpm(tmp_path / "home", "registry", "user", "list", "--data", tmp_path / "nowhere", check=False)
    assert missing.returncode != 0 and "no registry database" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_token_last_used_over_a_minute_ago_still_authenticates(api) -> None:
    """The once-a-minute `last_used_at` update compared SQLite's naive datetime with an aware one: a 500."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from registry_server.db.engine import engine_url

    token = api.add_user("alice")
    with api.client(token) as c:
        assert c.get("/api/v1/whoami").status_code == 200
    engine = create_engine(engine_url(api.database_url), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.execute(text("UPDATE tokens SET last_used_at = :t"), {"t": "2026-01-01 00:00:00"})
    finally:
        engine.dispose()
    with api.client(token) as c:
        assert c.get("/api/v1/whoami").status_code == 200
        (row,) = c.get("/api/v1/tokens").json()["tokens"]
    assert not row["last_used_at"].startswith("2026-01-01")
