"""`mysql://user[:password]@host[:port][?unix_socket=PATH]` connection strings."""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql

from .errors import RestoreError


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
