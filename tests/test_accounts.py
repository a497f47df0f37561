"""The workbench's users (docs/accounts.md): password and token logins, roles, the admin's user routes and the
users CLI; bad input refused with the field named; a users file two processes edit at once loses nothing."""
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from retriever.editorial.accounts import AccountError, UserStore, hash_password, verify_password
from retriever.editorial.audit import AuditLog
from retriever.config import ServiceConfig
from retriever.http import create_app

TOKEN = "legacy-admin-token"
BENCH = {"X-Requested-With": "workbench"}
PASSWORDS = {"zhang": "zhang-password-1", "li": "li-password-22", "wang": "wang-password-333"}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def site(tmp_path, searcher):
    """Users zhang (editor), li (reviewer), wang (admin) in a users file; apps made on demand (a gunicorn
    worker each: the same secret and files, nothing shared in memory)."""
    store = UserStore(tmp_path / "data" / "users.json")
    for name, role in (("zhang", "editor"), ("li", "reviewer"), ("wang", "admin")):
        store.add(name, [role], PASSWORDS[name])

    def app(**settings):
        config = ServiceConfig(**{"admin_token": TOKEN, "users_file": str(store.path), "rate_limit": None,
                                  "audit_log": str(tmp_path / "data" / "audit.jsonl"), "secret": "shared",
                                  "session_dir": str(tmp_path / "sessions"), **settings})
        return create_app(searcher, config)
    return {"store": store, "app": app, "audit": AuditLog(tmp_path / "data" / "audit.jsonl"), "tmp": tmp_path}


def login(client, name, password=None):
    response = client.post("/admin/login", headers=BENCH, json={"name": name, "password": password or PASSWORDS[name]})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


# --- logging in ----------------------------------------------------------------------------------


def test_a_user_logs_in_with_name_and_password_and_the_session_names_them(site):
    client = site["app"]().test_client()
    assert login(client, "zhang") == {"editor": True, "user": "zhang", "roles": ["editor"]}
    assert client.get("/admin/api/me").get_json() == {"user": "zhang", "roles": ["editor"], "via": "session",
                                                      "users_file": True, "own_password": True, "audit_log": True}
    assert client.get("/admin/api/session").get_json()["editor"] is True
    assert "zhang-password" not in client.get_cookie("retriever_workbench", path="/admin").value
    last = site["audit"].read(limit=1)[0]
    assert (last["actor"], last["action"], last["via"]) == ("zhang", "login", "password")


def test_the_legacy_admin_token_acts_as_admin_with_every_role(site):
    client = site["app"]().test_client()
    assert client.post("/admin/login", headers=BENCH, json={"token": TOKEN}).get_json()["user"] == "admin"
    assert client.get("/admin/api/me").get_json()["roles"] == ["editor", "reviewer", "admin"]
    bearer = site["app"]().test_client().get("/admin/api/users", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200 and {u["name"] for u in bearer.get_json()["users"]} == {"zhang", "li", "wang"}


@pytest.mark.parametrize("name, password", [("zhang", "wrong-password-9"), ("nobody", "whatever-password")])
def test_a_wrong_password_or_unknown_user_is_401_alike_and_audited_without_the_password(site, name, password):
    client = site["app"]().test_client()
    response = client.post("/admin/login", headers=BENCH, json={"name": name, "password": password})
    assert response.status_code == 401 and response.get_json() == {"error": "wrong_password",
                                                                   "message": "用户名或密码不正确"}
    record = site["audit"].read(action="login.failed")[0]
    assert record["user"] == name and record["client"] == "127.0.0.1" and record["actor"] == "(anonymous)"
    assert password not in site["audit"].path.read_text(encoding="utf-8")
    assert client.get("/admin/api/me").status_code == 401


def test_failed_logins_are_counted_per_client(site):
    client = site["app"]().test_client()
    wrong = {"name": "zhang", "password": "not-the-password"}
    statuses = [client.post("/admin/login", headers=BENCH, json=wrong).status_code for _ in range(11)]
    assert statuses == [401] * 10 + [429]
    right = client.post("/admin/login", headers=BENCH, json={"name": "zhang", "password": PASSWORDS["zhang"]})
    assert right.status_code == 429 and int(right.headers["Retry-After"]) > 0  # even the right one waits


@pytest.mark.parametrize("body, code", [
    ({"name": "zhang"}, "missing_password"), ({"password": "x" * 12}, "missing_name"),
    ({"name": 5, "password": "x" * 12}, "missing_name"), ({"name": "z" * 65, "password": "x" * 12}, "invalid_login"),
    ({}, "missing_token")])
def test_bad_login_bodies_are_400_naming_the_field(site, body, code):
    response = site["app"]().test_client().post("/admin/login", headers=BENCH, json=body)
    assert response.status_code == 400 and response.get_json()["error"] == code


def test_logout_ends_a_user_session_in_every_worker_and_is_audited(site):
    first, second = site["app"](), site["app"]()
    browser = first.test_client()
    login(browser, "li")
    kept = browser.get_cookie("retriever_workbench", path="/admin").value
    replay = second.test_client()
    replay.set_cookie("retriever_workbench", kept, path="/admin")
    assert replay.get("/admin/api/me").get_json()["user"] == "li"
    assert browser.post("/admin/logout", headers=BENCH).status_code == 200
    assert replay.get("/admin/api/me").status_code == 401
    assert site["audit"].read(limit=1)[0] | {"time": None} == {"time": None, "actor": "li", "action": "logout",
                                                               "client": "127.0.0.1"}


def test_a_new_password_or_disabling_ends_the_users_sessions_and_token(site):
    app = site["app"]()
    client = app.test_client()
    login(client, "zhang")
    token = site["store"].issue_token("zhang")
    bearer = {"Authorization": f"Bearer {token}"}
    assert app.test_client().get("/admin/api/me", headers=bearer).get_json()["via"] == "user_token"
    site["store"].update("zhang", password="a-new-password-4")
    assert client.get("/admin/api/me").status_code == 401  # the session made with the old password
    login(client, "zhang", "a-new-password-4")
    site["store"].update("zhang", disabled=True)
    assert client.get("/admin/api/me").status_code == 401
    assert app.test_client().get("/admin/api/me", headers=bearer).status_code == 401
    refused = app.test_client().post("/admin/login", headers=BENCH, json={"name": "zhang",
                                                                          "password": "a-new-password-4"})
    assert refused.status_code == 401


def test_a_user_changes_their_own_password_this_session_goes_on_the_others_end(site):
    app = site["app"]()
    here, elsewhere = app.test_client(), app.test_client()
    login(here, "zhang")
    login(elsewhere, "zhang")
    assert here.get("/admin/api/me").get_json()["own_password"] is True
    changed = here.post("/admin/api/me/password", headers=BENCH,
                        json={"current_password": PASSWORDS["zhang"], "new_password": "zhang-new-password-5"})
    assert changed.status_code == 200, changed.get_json()
    assert changed.get_json()["name"] == "zhang" and "hash" not in json.dumps(changed.get_json())
    assert here.get("/admin/api/me").get_json()["user"] == "zhang"  # renewed with the new password
    assert elsewhere.get("/admin/api/me").status_code == 401  # made with the old one
    assert site["store"].authenticate("zhang", "zhang-new-password-5") is not None
    assert site["store"].authenticate("zhang", PASSWORDS["zhang"]) is None
    last = site["audit"].read(limit=1)[0]
    assert (last["actor"], last["action"], last["user"]) == ("zhang", "user.password_changed", "zhang")
    assert "zhang-new-password-5" not in site["audit"].path.read_text(encoding="utf-8")


@pytest.mark.parametrize("body, status, code, field", [
    ({"current_password": "not-my-password-0", "new_password": "a-new-password-6"}, 403, "wrong_password",
     "current_password"),
    ({"current_password": PASSWORDS["li"], "new_password": "short"}, 400, "invalid_password", "new_password"),
    ({"current_password": PASSWORDS["li"]}, 400, "invalid_user", "new_password"),
    ({"current_password": PASSWORDS["li"], "new_password": "x" * 300}, 400, "invalid_user", "new_password"),
    ({"current_password": PASSWORDS["li"], "new_password": "a-new-password-6", "user": "wang"}, 400, "invalid_user",
     "user"),
])
def test_a_bad_own_password_change_names_the_problem_and_changes_nothing(site, body, status, code, field):
    client = site["app"]().test_client()
    login(client, "li")
    refused = client.post("/admin/api/me/password", headers=BENCH, json=body)
    assert (refused.status_code, refused.get_json()["error"]) == (status, code)
    assert field in refused.get_json()["message"]
    assert site["store"].authenticate("li", PASSWORDS["li"]) is not None
    assert client.get("/admin/api/me").status_code == 200
    if code == "wrong_password":
        last = site["audit"].read(limit=1)[0]
        assert (last["actor"], last["action"]) == ("li", "user.password_change_failed")


def test_the_admin_token_has_no_own_password_and_a_cookie_write_needs_the_header(site):
    app = site["app"]()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert app.test_client().get("/admin/api/me", headers=bearer).get_json()["own_password"] is False
    refused = app.test_client().post("/admin/api/me/password", headers=bearer,
                                     json={"current_password": TOKEN, "new_password": "a-new-password-7"})
    assert (refused.status_code, refused.get_json()["error"]) == (409, "no_own_password")
    client = app.test_client()
    login(client, "zhang")
    no_header = client.post("/admin/api/me/password",
                            json={"current_password": PASSWORDS["zhang"], "new_password": "a-new-password-7"})
    assert (no_header.status_code, no_header.get_json()["error"]) == (403, "missing_csrf_header")
    assert app.test_client().post("/admin/api/me/password", headers=BENCH, json={}).status_code == 401


# --- roles ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("user, path, allowed", [
    ("zhang", "/admin/api/users", False), ("li", "/admin/api/users", False), ("wang", "/admin/api/users", True),
    ("zhang", "/admin/api/audit", False), ("li", "/admin/api/audit", True), ("wang", "/admin/api/audit", True)])
def test_each_route_takes_its_role(site, user, path, allowed):
    client = site["app"]().test_client()
    login(client, user)
    response = client.get(path)
    if allowed:
        assert response.status_code == 200
    else:
        body = response.get_json()
        assert response.status_code == 403 and body["error"] == "forbidden_role"
        assert ("管理员" if path.endswith("users") else "审核") in body["message"] and user in body["message"]


def test_an_editor_token_drives_the_json_api_but_not_the_admins(site):
    token = site["store"].issue_token("zhang")
    client = site["app"]().test_client()
    bearer = {"Authorization": f"Bearer {token}"}
    assert client.get("/admin/api/me", headers=bearer).get_json()["user"] == "zhang"
    denied = client.post("/admin/api/users", headers=bearer, json={"name": "x1", "roles": ["admin"], "token": True})
    assert denied.status_code == 403 and denied.get_json()["error"] == "forbidden_role"
    assert client.get("/admin/api/me", headers={"Authorization": "Bearer frt_guess"}).status_code == 401
    assert site["store"].get("x1") is None


def test_a_users_token_is_not_counted_as_a_guess(site):
    token = site["store"].issue_token("li")
    client = site["app"]().test_client()
    statuses = {client.get("/admin/api/audit", headers={"Authorization": f"Bearer {token}"}).status_code
                for _ in range(12)}
    assert statuses == {200}


def test_a_broken_users_file_is_503_for_users_and_the_admin_token_still_works(site):
    site["store"].path.write_text("{broken", encoding="utf-8")
    client = site["app"]().test_client()
    response = client.post("/admin/login", headers=BENCH, json={"name": "zhang", "password": PASSWORDS["zhang"]})
    assert response.status_code == 503 and response.get_json()["error"] == "users_unreadable"
    assert client.post("/admin/login", headers=BENCH, json={"token": TOKEN}).status_code == 200
    for method, path, body in (("get", "/admin/api/users", None), ("get", "/admin/api/users/zhang", None),
                               ("patch", "/admin/api/users/zhang", {"disabled": True})):
        answer = getattr(client, method)(path, headers=BENCH, **({"json": body} if body else {}))
        assert answer.status_code == 503 and "users.json" in answer.get_json()["message"]
    assert site["store"].path.read_text(encoding="utf-8") == "{broken"  # never overwritten


def test_a_cookie_write_without_the_workbench_header_is_refused(site):
    client = site["app"]().test_client()
    login(client, "wang")
    forged = client.patch("/admin/api/users/zhang", json={"disabled": True})
    assert forged.status_code == 403 and forged.get_json()["error"] == "missing_csrf_header"
    assert site["store"].get("zhang").disabled is False


def test_without_token_or_users_the_workbench_is_off(searcher, tmp_path):
    client = create_app(searcher, ServiceConfig(users_file=str(tmp_path / "none.json"))).test_client()
    for response in (client.post("/admin/login", headers=BENCH, json={"name": "a", "password": "b" * 10}),
                     client.get("/admin/api/me")):
        assert response.status_code == 403 and response.get_json()["error"] == "admin_disabled"


# --- the admin's user routes ---------------------------------------------------------------------


def admin_client(site):
    client = site["app"]().test_client()
    login(client, "wang")
    return client


def test_the_admin_creates_changes_and_removes_a_user_each_audited(site):
    client = admin_client(site)
    created = client.post("/admin/api/users", headers=BENCH,
                          json={"name": "赵六", "roles": ["editor", "reviewer"], "password": "zhao-password-1",
                                "token": True})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["user"]["roles"] == ["editor", "reviewer"] and body["token"].startswith("frt_")
    stored = site["store"].path.read_text(encoding="utf-8")
    assert "zhao-password-1" not in stored and body["token"] not in stored  # hashes only
    new_client = site["app"]().test_client()
    assert new_client.get("/admin/api/me", headers={"Authorization": f"Bearer {body['token']}"}).status_code == 200
    changed = client.patch("/admin/api/users/赵六", headers=BENCH, json={"roles": ["reviewer"]})
    assert changed.status_code == 200 and changed.get_json()["roles"] == ["reviewer"]
    reissued = client.post("/admin/api/users/赵六/token", headers=BENCH)
    assert reissued.status_code == 201 and reissued.get_json()["token"] != body["token"]
    assert new_client.get("/admin/api/me", headers={"Authorization": f"Bearer {body['token']}"}).status_code == 401
    assert client.delete("/admin/api/users/赵六/token", headers=BENCH).get_json()["token"] is False
    assert client.delete("/admin/api/users/赵六", headers=BENCH).status_code == 200
    assert site["store"].get("赵六") is None
    actions = [(r["actor"], r["action"]) for r in reversed(site["audit"].read(action="user"))]
    assert actions == [("wang", "user.created"), ("wang", "user.updated"), ("wang", "user.token_issued"),
                       ("wang", "user.token_revoked"), ("wang", "user.removed")]
    assert site["audit"].read(action="user.updated")[0]["roles"] == {"from": ["editor", "reviewer"],
                                                                     "to": ["reviewer"]}


@pytest.mark.parametrize("method, path, body, status, code, field", [
    ("post", "/admin/api/users", {"name": "zhang", "roles": ["editor"], "password": "long-enough-1"}, 409,
     "user_exists", "zhang"),
    ("post", "/admin/api/users", {"name": "new1", "roles": ["owner"], "password": "long-enough-1"}, 400,
     "invalid_user", "roles"),
    ("post", "/admin/api/users", {"name": "new1", "roles": ["editor"], "password": "short"}, 400, "invalid_user",
     "password"),
    ("post", "/admin/api/users", {"name": "new 1", "roles": ["editor"], "password": "long-enough-1"}, 400,
     "invalid_user", "name"),
    ("post", "/admin/api/users", {"name": "admin", "roles": ["editor"], "password": "long-enough-1"}, 400,
     "invalid_user", "reserved"),
    ("post", "/admin/api/users", {"name": "new1", "roles": ["editor"]}, 400, "invalid_user", "password"),
    ("post", "/admin/api/users", {"name": "new1", "roles": [], "password": "long-enough-1"}, 400, "invalid_user",
     "roles"),
    ("post", "/admin/api/users", {"name": "new1", "roles": ["editor"], "password": "long-enough-1", "x": 1}, 400,
     "invalid_user", "x"),
    ("post", "/admin/api/users", {"name": "n" * 65, "roles": ["editor"], "password": "long-enough-1"}, 400,
     "invalid_user", "name"),
    ("post", "/admin/api/users", {"name": "new1", "roles": ["editor"], "password": "p" * 257}, 400,
     "invalid_user", "password"),
    ("patch", "/admin/api/users/nobody", {"disabled": True}, 404, "unknown_user", "nobody"),
    ("patch", "/admin/api/users/zhang", {}, 400, "invalid_user", "body"),
    ("patch", "/admin/api/users/zhang", {"disabled": "yes"}, 400, "invalid_user", "disabled"),
    ("get", "/admin/api/users/nobody", None, 404, "unknown_user", "nobody"),
    ("delete", "/admin/api/users/nobody", None, 404, "unknown_user", "nobody"),
    ("post", "/admin/api/users/nobody/token", None, 404, "unknown_user", "nobody"),
    ("delete", "/admin/api/users/nobody/token", None, 404, "unknown_user", "nobody"),
])
def test_bad_user_requests_name_the_problem_and_change_nothing(site, method, path, body, status, code, field):
    client = admin_client(site)
    before = site["store"].path.read_bytes()
    response = getattr(client, method)(path, headers=BENCH, **({"json": body} if body is not None else {}))
    assert response.status_code == status and response.get_json()["error"] == code, response.get_json()
    assert field in response.get_json()["message"]
    assert site["store"].path.read_bytes() == before


def test_an_oversize_body_is_413(site):
    client = admin_client(site)
    response = client.post("/admin/api/users", headers=BENCH,
                           json={"name": "big", "roles": ["editor"], "password": "p" * 70_000})
    assert response.status_code == 413 and response.get_json()["error"] == "payload_too_large"
    own = client.post("/admin/api/me/password", headers=BENCH,
                      json={"current_password": PASSWORDS["wang"], "new_password": "p" * 70_000})
    assert own.status_code == 413 and own.get_json()["error"] == "payload_too_large"
    assert site["store"].authenticate("wang", PASSWORDS["wang"]) is not None


def test_without_the_admin_token_the_last_admin_cannot_lock_everyone_out(site):
    client = site["app"](admin_token=None).test_client()
    login(client, "wang")
    for method, body in (("patch", {"roles": ["editor"]}), ("patch", {"disabled": True}), ("delete", None)):
        response = getattr(client, method)("/admin/api/users/wang", headers=BENCH,
                                           **({"json": body} if body else {}))
        assert response.status_code == 409 and response.get_json()["error"] == "last_admin"
    assert site["store"].get("wang").roles == ("admin",)


def test_users_routes_without_a_users_file_say_so(searcher):
    client = create_app(searcher, ServiceConfig(admin_token=TOKEN, rate_limit=None)).test_client()
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/admin/api/users", headers=bearer).get_json() == {"users": []}
    response = client.post("/admin/api/users", headers=bearer, json={"name": "a1", "roles": ["editor"], "token": True})
    assert response.status_code == 409 and response.get_json()["error"] == "users_unavailable"


def test_the_routes_are_in_the_openapi_document(site):
    paths = site["app"]().test_client().get("/openapi.json").get_json()["paths"]
    assert {"get", "post"} <= set(paths["/admin/api/users"])
    assert {"get", "patch", "delete"} <= set(paths["/admin/api/users/{name}"])
    assert {"post", "delete"} <= set(paths["/admin/api/users/{name}/token"])
    assert "403" in paths["/admin/api/users"]["post"]["responses"]
    assert {"/admin/api/me", "/admin/api/audit", "/admin/api/audit/export"} <= set(paths)


# --- the file and the hashes ---------------------------------------------------------------------


def test_passwords_are_salted_scrypt_hashes_checked_in_constant_time(tmp_path):
    first, second = hash_password("same-password-1"), hash_password("same-password-1")
    assert first != second and first.startswith("scrypt$") and "same-password" not in first
    assert verify_password(first, "same-password-1") and not verify_password(first, "same-password-2")
    assert not verify_password(None, "same-password-1") and not verify_password("garbage", "x")


def test_the_users_file_is_private_and_a_broken_one_is_named(tmp_path):
    store = UserStore(tmp_path / "users.json")
    store.add("zhang", ["editor"], "zhang-password-1")
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    store.path.write_text("{not json", encoding="utf-8")
    with pytest.raises(AccountError, match="users.json"):
        UserStore(store.path).users()


WRITER = textwrap.dedent("""
    import sys
    from retriever.editorial.accounts import UserStore
    store = UserStore(sys.argv[1])
    for number in range(int(sys.argv[3])):
        store.add(f"{sys.argv[2]}{number}", ["editor"])
        store.update(f"{sys.argv[2]}{number}", roles=["editor", "reviewer"])
""")


def test_two_processes_editing_the_users_file_at_once_lose_nothing(tmp_path):
    path = tmp_path / "users.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), prefix, "40"], env=env)
               for prefix in ("a", "b")]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0]
    users = UserStore(path).users()
    assert len(users) == 80 and all(u.roles == ("editor", "reviewer") for u in users.values())


# --- the CLI -------------------------------------------------------------------------------------


def cli(*args, stdin="", env=None):
    return subprocess.run([sys.executable, "-m", "retriever", *args], input=stdin, capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def run_main(monkeypatch, capsys, *args, stdin=""):
    """The CLI in this process (the same main() as ``python -m retriever``): exit code and stderr."""
    import io

    from retriever.cli import main

    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    return code, capsys.readouterr().err


def test_the_users_cli_manages_users_and_audits_as_the_login_name(tmp_path, monkeypatch, capsys):
    """Real processes for adding and listing; the other sub-commands through the same main() in this process."""
    index, users = tmp_path / "index", tmp_path / "index" / "data" / "users.json"
    index.mkdir()
    base = ("users", "--index", str(index))
    added = cli(*base, "add", "zhang", "--role", "editor", "--password-stdin", stdin="zhang-password-1\n")
    assert added.returncode == 0, added.stderr
    assert UserStore(users).authenticate("zhang", "zhang-password-1") is not None
    token = cli(*base, "add", "li", "--role", "reviewer", "--role", "admin", "--token")
    assert token.returncode == 0 and token.stdout.strip().startswith("frt_") and "once" in token.stderr
    assert UserStore(users).by_token(token.stdout.strip()).name == "li"
    assert run_main(monkeypatch, capsys, *base, "set-role", "zhang", "--role", "reviewer")[0] == 0
    assert run_main(monkeypatch, capsys, *base, "passwd", "zhang", "--password-stdin",
                    stdin="another-password-2\n")[0] == 0
    assert UserStore(users).authenticate("zhang", "another-password-2").roles == ("reviewer",)
    assert run_main(monkeypatch, capsys, *base, "token", "li")[0] == 0
    assert UserStore(users).by_token(token.stdout.strip()) is None  # the new token replaced it
    assert run_main(monkeypatch, capsys, *base, "disable", "zhang")[0] == 0
    listing = cli(*base, "list").stdout.splitlines()
    assert listing == ["li\treviewer,admin\ttoken", "zhang\treviewer\tpassword disabled"]
    assert run_main(monkeypatch, capsys, *base, "remove", "li")[0] == 0 and set(UserStore(users).users()) == {"zhang"}
    trail = AuditLog(index / "data" / "audit.jsonl").read()
    assert [r["action"] for r in reversed(trail)] == ["user.created", "user.created", "user.updated",
                                                      "user.updated", "user.token_issued", "user.updated",
                                                      "user.removed"]
    assert all(r["actor"].startswith("cli:") for r in trail)
    assert "password-1" not in (index / "data" / "audit.jsonl").read_text(encoding="utf-8")


@pytest.mark.parametrize("args, stdin, message", [
    (("add", "zhang", "--role", "editor", "--password-stdin"), "short\n", "10 to 256 characters"),
    (("add", "admin", "--role", "editor", "--token"), "", "reserved"),
    (("add", "bad name", "--role", "editor", "--token"), "", "user name"),
    (("add", "zhang", "--role", "editor"), "", "--password-stdin"),  # no terminal to ask on
    (("set-role", "nobody", "--role", "editor"), "", "no user 'nobody'"),
    (("remove", "nobody"), "", "no user 'nobody'"),
])
def test_the_users_cli_refuses_bad_input_with_an_error_line(tmp_path, monkeypatch, capsys, args, stdin, message):
    code, err = run_main(monkeypatch, capsys, "users", "--users", str(tmp_path / "users.json"), *args, stdin=stdin)
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert not (tmp_path / "users.json").exists()


def test_the_users_cli_refuses_a_duplicate_and_an_unknown_role(tmp_path, monkeypatch, capsys):
    users = str(tmp_path / "users.json")
    assert run_main(monkeypatch, capsys, "users", "--users", users, "add", "zhang", "--role", "editor",
                    "--token")[0] == 0
    code, err = run_main(monkeypatch, capsys, "users", "--users", users, "add", "zhang", "--role", "editor", "--token")
    assert code == 2 and err.strip() == "error: user 'zhang' exists already"
    code, err = run_main(monkeypatch, capsys, "users", "--users", users, "add", "li", "--role", "owner", "--token")
    assert code == 2 and "invalid choice: 'owner'" in err
    assert [u["name"] for u in json.loads(Path(users).read_text(encoding="utf-8"))["users"]] == ["zhang"]


# --- the workbench in a real browser -------------------------------------------------------------


@pytest.fixture()
def served_site(site):
    """The workbench on a real socket (Werkzeug's server in a thread)."""
    import threading

    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, site["app"](), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)


@pytest.fixture()
def chromium():
    """A real Chromium (test_browser's launch: skipped where none is installed, CI requires it), and
    Playwright's expect."""
    from test_browser import expect, launched_chromium

    with launched_chromium() as browser:
        yield browser, expect


def _log_in(page, expect, name: str, password: str, shown: str) -> None:
    """Log in through the workbench's form and wait until it names the user."""
    page.locator("#login-name").fill(name)
    page.locator("#login-password").fill(password)
    page.get_by_role("button", name="登录").click()
    expect(page.locator("#whoami")).to_have_text(shown, timeout=15_000)


@pytest.fixture()
def workbench(served_site, chromium):
    """The workbench's login page in a real Chromium, and Playwright's expect."""
    browser, expect = chromium
    page = browser.new_page(locale="zh-CN")
    page.goto(served_site + "/admin")
    return page, expect


def test_the_admin_adds_a_user_in_the_browser_and_a_reviewer_sees_it_in_the_audit_log(workbench, site):
    page, expect = workbench
    _log_in(page, expect, "wang", PASSWORDS["wang"], "wang（管理员）")
    expect(page.locator("#users tr[data-user=li]")).to_be_visible()
    page.locator("#user-name").fill("zhao")
    page.locator("#user-password").fill("zhao-password-1")
    page.get_by_role("button", name="添加用户").click()
    expect(page.locator("#users-notice")).to_have_text("已添加 zhao（编辑）")
    expect(page.locator("#users tr[data-user=zhao]")).to_contain_text("有密码")
    page.get_by_role("button", name="退出登录").click()
    _log_in(page, expect, "li", PASSWORDS["li"], "li（审核）")
    expect(page.locator("#users-panel")).to_be_hidden()
    rows = page.locator("#audit-table tr")
    expect(rows.nth(1)).to_contain_text("登录")  # li's own login, newest first
    page.locator("#audit-action").fill("user")
    page.locator("#audit-form button[type=submit]").click()
    expect(rows).to_have_count(2)
    expect(rows.nth(1)).to_contain_text("wang")
    expect(rows.nth(1)).to_contain_text("添加用户")
    expect(rows.nth(1)).to_contain_text('"user":"zhao"')
    export = page.locator("#audit-export-csv").get_attribute("href")
    assert export == "/admin/api/audit/export?action=user&format=csv"
    assert UserStore(site["store"].path).authenticate("zhao", "zhao-password-1").roles == ("editor",)


def test_a_user_changes_their_own_password_in_the_browser(workbench, site):
    page, expect = workbench
    _log_in(page, expect, "zhang", PASSWORDS["zhang"], "zhang（编辑）")
    expect(page.locator("#own-password-form")).to_be_hidden()
    page.get_by_role("button", name="修改密码").click()
    page.locator("#own-password-current").fill(PASSWORDS["zhang"])
    page.locator("#own-password-new").fill("zhang-browser-pass-8")
    page.locator("#own-password-repeat").fill("zhang-browser-pass-9")
    page.get_by_role("button", name="保存新密码").click()
    expect(page.locator("#own-password-notice")).to_have_text("两次输入的新密码不一致")
    page.locator("#own-password-current").fill("not-my-password-0")
    page.locator("#own-password-repeat").fill("zhang-browser-pass-8")
    page.get_by_role("button", name="保存新密码").click()
    expect(page.locator("#own-password-notice")).to_have_text("current_password: 当前密码不正确")
    page.locator("#own-password-current").fill(PASSWORDS["zhang"])
    page.get_by_role("button", name="保存新密码").click()
    expect(page.locator("#own-password-notice")).to_contain_text("密码已修改")
    expect(page.locator("#own-password-form")).to_be_hidden()
    page.reload()  # the session goes on with the new password
    expect(page.locator("#whoami")).to_have_text("zhang（编辑）", timeout=15_000)
    page.get_by_role("button", name="退出登录").click()
    _log_in(page, expect, "zhang", "zhang-browser-pass-8", "zhang（编辑）")
    assert site["store"].authenticate("zhang", PASSWORDS["zhang"]) is None
