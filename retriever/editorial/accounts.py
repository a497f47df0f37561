"""The workbench's users: names, roles, hashed passwords and API tokens, in one JSON file.

The file (``users.json`` in the data folder by default; docs/accounts.md) is replaced atomically,
mode 0600, and every change runs read-modify-write under an exclusive ``flock`` on a lock file
beside it, so two workers (or the CLI and a worker) editing at once never lose one another's
change. Passwords are kept as scrypt hashes with a salt per user; API tokens as SHA-256 digests
(they are 256 random bits: a slow hash adds nothing), shown once when made.

Roles: ``editor`` drafts changes, ``reviewer`` approves them, ``admin`` manages users and holds
every role (as the legacy ``RETRIEVER_ADMIN_TOKEN`` does, acting as the user ``admin``).
"""
from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, TypeVar

from ..errors import RetrieverError
from ..files import write_text_atomic

ROLES = ("editor", "reviewer", "admin")
LEGACY_ADMIN = "admin"  # the user the legacy admin token acts as: no user of the file may take the name
MIN_PASSWORD_CHARS, MAX_PASSWORD_CHARS = 10, 256
TOKEN_PREFIX = "frt_"
USERS_FILE = "users.json"
FORMAT = 1
_NAME = re.compile(r"[^\W_][\w.-]{0,63}")  # letters (Chinese too), digits, . _ -; no spaces or controls
# scrypt at n=2**14, r=8: 16 MiB and ~50 ms a check, OWASP's minimum; parameters are stored with each hash.
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
T = TypeVar("T")


class AccountError(RetrieverError):
    """A user request that cannot be done; ``kind`` says why (invalid, not_found, exists)."""

    def __init__(self, message: str, kind: str = "invalid", field: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.field = kind, field


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- checks and hashes (pure) --------------------------------------------------------------------


def check_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise AccountError(f"user name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a "
                           f"letter or digit", field="name")
    if name == LEGACY_ADMIN:
        raise AccountError(f"user name {LEGACY_ADMIN!r} is reserved for RETRIEVER_ADMIN_TOKEN; choose another",
                           field="name")
    return name


def check_roles(roles: object) -> tuple[str, ...]:
    """The roles in the order of ROLES, duplicates dropped; at least one, each one known."""
    if not isinstance(roles, (list, tuple)) or not roles or not all(isinstance(r, str) for r in roles):
        raise AccountError(f"roles must be a non-empty list of {', '.join(ROLES)}", field="roles")
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise AccountError(f"unknown role {unknown[0]!r}: choose from {', '.join(ROLES)}", field="roles")
    return tuple(r for r in ROLES if r in roles)


def check_password(password: object) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise AccountError(f"the password must be {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters long",
                           field="password")
    return password


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, salt: bytes | None = None) -> str:
    """``scrypt$n$r$p$<salt>$<hash>`` (base64), a fresh 16-byte salt unless given."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8", "replace"), salt=salt, dklen=32, maxmem=64 * 1024 * 1024,
                            **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${_b64(salt)}${_b64(digest)}"


_DUMMY_HASH = hash_password("not a password of anyone", b"\0" * 16)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``, compared in constant time; an unknown user (None) costs as much."""
    try:
        scheme, n, r, p, salt, digest = (stored or _DUMMY_HASH).split("$")
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode("utf-8", "replace"), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), dklen=len(expected), maxmem=64 * 1024 * 1024)
    except (ValueError, TypeError):
        return False
    return stored is not None and scheme == "scrypt" and hmac.compare_digest(got, expected)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


# --- the user ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class User:
    name: str
    roles: tuple[str, ...]
    password: str | None = None  # scrypt hash; None: this user logs in with a token only
    token: str | None = None  # SHA-256 of the API token; None: no token
    token_created: str | None = None
    disabled: bool = False
    created: str = field(default_factory=utc_now)
    updated: str = field(default_factory=utc_now)

    def holds(self, role: str) -> bool:
        """An admin holds every role."""
        return not self.disabled and (role in self.roles or "admin" in self.roles)

    def public(self) -> dict[str, Any]:
        """What anyone listing users sees: never a hash."""
        return {"name": self.name, "roles": list(self.roles), "disabled": self.disabled,
                "password": self.password is not None, "token": self.token is not None,
                "token_created": self.token_created, "created": self.created, "updated": self.updated}

    def stored(self) -> dict[str, Any]:
        return {"name": self.name, "roles": list(self.roles), "password": self.password, "token": self.token,
                "token_created": self.token_created, "disabled": self.disabled, "created": self.created,
                "updated": self.updated}

    @classmethod
    def from_stored(cls, data: Any, where: str) -> "User":
        if not isinstance(data, dict) or not isinstance(data.get("name"), str):
            raise AccountError(f"{where}: a user must be an object with a 'name'", kind="unreadable")
        try:
            return cls(name=data["name"], roles=check_roles(data.get("roles")), password=data.get("password"),
                       token=data.get("token"), token_created=data.get("token_created"),
                       disabled=bool(data.get("disabled", False)), created=data.get("created") or utc_now(),
                       updated=data.get("updated") or utc_now())
        except AccountError as exc:
            raise AccountError(f"{where}: user {data['name']!r}: {exc}", kind="unreadable") from None


def _admin_left(users: dict[str, User], required: bool) -> None:
    if required and not any(user.holds("admin") for user in users.values()):
        raise AccountError("this would leave no enabled admin: give another user the admin role first",
                           kind="last_admin")


# --- the file ------------------------------------------------------------------------------------


class UserStore:
    """The users file at ``path``: read by every request that checks a login, written under a lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._cache: tuple[tuple, dict[str, User]] | None = None

    def users(self) -> dict[str, User]:
        """Every user by name (none if the file does not exist); re-read only when the file changed."""
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise AccountError(f"{self.path}: cannot read the users file ({exc.strerror or exc})",
                               kind="unreadable") from None
        stamp = (info.st_ino, info.st_mtime_ns, info.st_size)
        if self._cache is None or self._cache[0] != stamp:
            self._cache = (stamp, self._read())
        return self._cache[1]

    def _read(self) -> dict[str, User]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise AccountError(f"{self.path}: the users file cannot be read ({exc}); restore it from its "
                               f"backup or fix the JSON", kind="unreadable") from None
        listed = data.get("users") if isinstance(data, dict) else None
        if not isinstance(listed, list):
            raise AccountError(f"{self.path}: expected {{\"version\": {FORMAT}, \"users\": [...]}}", kind="unreadable")
        users = [User.from_stored(item, f"{self.path}: users[{number}]") for number, item in enumerate(listed)]
        return {user.name: user for user in users}

    def get(self, name: str) -> User | None:
        return self.users().get(name) if isinstance(name, str) else None

    def any_enabled(self) -> bool:
        return any(not user.disabled for user in self.users().values())

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def change(self, edit: Callable[[dict[str, User]], T]) -> T:
        """Run ``edit`` on the users as they are on disk now and write what it leaves, all under the lock."""
        with self._locked():
            users = dict(self._read())
            result = edit(users)
            text = json.dumps({"version": FORMAT, "users": [u.stored() for u in users.values()]},
                              ensure_ascii=False, indent=1)
            write_text_atomic(self.path, text + "\n")  # mkstemp's file: mode 0600, kept by the rename
            os.chmod(self.path, 0o600)
            self._cache = None
            return result

    # --- what the CLI and the admin routes do ---

    def add(self, name: str, roles: Iterable[str], password: str | None = None) -> User:
        check_name(name)
        user = User(name=name, roles=check_roles(list(roles)),
                    password=hash_password(check_password(password)) if password is not None else None)

        def edit(users: dict[str, User]) -> User:
            if name in users:
                raise AccountError(f"user {name!r} exists already", kind="exists", field="name")
            users[name] = user
            return user
        return self.change(edit)

    def update(self, name: str, keep_admin: bool = False, **changes: Any) -> User:
        """Change ``roles``, ``password`` (plain, hashed here) or ``disabled`` of an existing user.

        ``keep_admin``: refuse a change that leaves no enabled admin (when no admin token could stand in)."""
        fields: dict[str, Any] = {}
        if "roles" in changes:
            fields["roles"] = check_roles(changes["roles"])
        if "password" in changes:
            fields["password"] = hash_password(check_password(changes["password"]))
        if "disabled" in changes:
            if not isinstance(changes["disabled"], bool):
                raise AccountError("disabled must be true or false", field="disabled")
            fields["disabled"] = changes["disabled"]

        def edit(users: dict[str, User]) -> User:
            users[name] = replace(self._existing(users, name), **fields, updated=utc_now())
            _admin_left(users, keep_admin)
            return users[name]
        return self.change(edit)

    def issue_token(self, name: str) -> str:
        """A new API token for ``name`` (replacing any earlier one), returned once: only its digest is kept."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)

        def edit(users: dict[str, User]) -> None:
            now = utc_now()
            users[name] = replace(self._existing(users, name), token=token_digest(token), token_created=now,
                                  updated=now)
        self.change(edit)
        return token

    def revoke_token(self, name: str) -> User:
        def edit(users: dict[str, User]) -> User:
            users[name] = replace(self._existing(users, name), token=None, token_created=None, updated=utc_now())
            return users[name]
        return self.change(edit)

    def remove(self, name: str, keep_admin: bool = False) -> User:
        def edit(users: dict[str, User]) -> User:
            removed = users.pop(self._existing(users, name).name)
            _admin_left(users, keep_admin)
            return removed
        return self.change(edit)

    @staticmethod
    def _existing(users: dict[str, User], name: str) -> User:
        if name not in users:
            raise AccountError(f"no user {name!r}", kind="not_found", field="name")
        return users[name]

    # --- what a login checks ---

    def authenticate(self, name: str, password: str) -> User | None:
        """The enabled user ``name`` if ``password`` is theirs (same cost whether the user exists or not)."""
        user = self.get(name)
        matches = verify_password(user.password if user else None, password)
        return user if user is not None and matches and not user.disabled else None

    def by_token(self, token: str) -> User | None:
        """The enabled user holding API token ``token``."""
        digest = token_digest(token)
        found = None
        for user in self.users().values():  # every digest compared: the time says nothing of which matched
            if user.token and hmac.compare_digest(user.token, digest) and not user.disabled:
                found = user
        return found
