"""`mysql://user[:password]@host[:port][?unix_socket=PATH]` connection strings.

The password may be written `${NAME}` (quoted against the shell: `--source 'mysql://repl:${REPL_PW}@db'`):
it is then taken from the environment variable NAME, so it never shows on a command line (`ps`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pymysql

from restore.errors import RestoreError

# mysql://user:${NAME}@...: a password to take from the environment
_ENV_PASSWORD = re.compile(r"^(?:mysql|mariadb)://[^:@/]*:(?P<ref>\$\{(?P<var>[A-Za-z_][A-Za-z0-9_]*)\})@")


@dataclass(frozen=True)
class Dsn:
    user: str
    password: str | None
    host: str
    port: int
    unix_socket: str | None = None

    @classmethod
    def parse(cls, text: str, *, what: str = "DSN") -> "Dsn":
        hint = f"write the {what} as mysql://user[:password]@host[:port][?unix_socket=PATH]"
        if m := _ENV_PASSWORD.match(text):
            value = os.environ.get(m["var"])
            if not value:
                raise RestoreError(f"{what}: the password is ${{{m['var']}}}, but {m['var']} is not set in the "
                                   "environment", hint=f"export {m['var']}=... before running, or leave the password out")
            text = text[:m.start("ref")] + quote(value, safe="") + text[m.end("ref"):]
        # urlsplit's own messages quote the text they choke on, which can be part of the
        # password (an unescaped / ? # ends the host part early): never pass them on.
        special = "percent-encode special characters such as / ? # @ in the password (/ is %2F, ? is %3F, # is %23, @ is %40)"
        try:
            parts = urlsplit(text)
        except ValueError:
            raise RestoreError(f"{what} is malformed: the host part cannot be read ({special}; "
                               "write an IPv6 host in [brackets])", hint=hint) from None
        try:
            port = parts.port or 3306
        except ValueError:
            raise RestoreError(f"{what} is malformed: the port is not a number from 1 to 65535 ({special})",
                               hint=hint) from None
        if parts.scheme not in ("mysql", "mariadb"):
            raise RestoreError(f"{what} must start with mysql://, got {parts.scheme or 'no scheme'}",
                               hint=hint)
        if not parts.hostname or not parts.username:
            raise RestoreError(f"{what} needs a user and a host", hint=hint)
        query = parse_qs(parts.query)
        unknown = set(query) - {"unix_socket"}
        if unknown:
            raise RestoreError(f"{what} has unknown option(s) {', '.join(sorted(unknown))}", hint=hint)
        sock = query.get("unix_socket", [None])[0]
        return cls(user=unquote(parts.username),
                   password=unquote(parts.password) if parts.password is not None else None,
                   host=parts.hostname, port=port, unix_socket=sock)

    def connect(self, **kw: object) -> pymysql.connections.Connection:
        args: dict = dict(user=self.user, password=self.password or "", charset="utf8mb4",
                          autocommit=True)
        if self.unix_socket:
            args["unix_socket"] = self.unix_socket
        else:
            args.update(host=self.host, port=self.port)
        args.update(kw)
        try:
            return pymysql.connect(**args)
        except pymysql.err.OperationalError as exc:
            raise RestoreError(f"cannot connect to {self.redacted()}: {exc.args[-1]}",
                               hint="check that the server is up and the user/password are right") from None

    def redacted(self) -> str:
        """The DSN without its password: safe for messages and logs."""
        auth = self.user + (":***" if self.password else "")
        text = f"mysql://{auth}@{self.host}:{self.port}"
        return text + (f"?unix_socket={self.unix_socket}" if self.unix_socket else "")

    def __repr__(self) -> str:  # never leak the password through repr() in a traceback
        return f"Dsn({self.redacted()!r})"
