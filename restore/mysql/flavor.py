"""Everything that differs between MariaDB and MySQL servers, in one place."""
from __future__ import annotations

from dataclasses import dataclass, field

# Session variables only MariaDB knows; a MySQL target would reject them.
_MARIADB_ONLY = {"check_constraint_checks"}
# Session variables only MySQL knows.
_MYSQL_ONLY = {"default_collation_for_utf8mb4", "sql_require_primary_key", "default_table_encryption"}


@dataclass
class Flavor:
    version: str
    _collations: dict[int, tuple[str, str]] = field(default_factory=dict)

    @classmethod
    def detect(cls, conn) -> "Flavor":
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            return cls(cur.fetchone()[0])

    @property
    def is_mariadb(self) -> bool:
        return "mariadb" in self.version.lower()

    @property
    def name(self) -> str:
        return "MariaDB" if self.is_mariadb else "MySQL"

    def master_status_sql(self) -> str:
        """MySQL 8.4 removed SHOW MASTER STATUS."""
        if self.is_mariadb:
            return "SHOW MASTER STATUS"
        major_minor = tuple(int(x) for x in self.version.split("-")[0].split(".")[:2])
        return "SHOW BINARY LOG STATUS" if major_minor >= (8, 4) else "SHOW MASTER STATUS"

    def filter_session(self, settings: dict[str, str]) -> dict[str, str]:
        drop = _MYSQL_ONLY if self.is_mariadb else _MARIADB_ONLY
        return {k: v for k, v in settings.items() if k not in drop}

    def collation_name(self, conn, collation_id: int) -> tuple[str, str]:
        """(collation, charset) for a collation id, as the target names them."""
        if not self._collations:
            with conn.cursor() as cur:
                cur.execute("SELECT ID, COLLATION_NAME, CHARACTER_SET_NAME FROM information_schema.COLLATIONS")
                self._collations = {int(r[0]): (r[1], r[2]) for r in cur.fetchall() if r[0] is not None}
        return self._collations.get(collation_id, ("binary", "binary"))
