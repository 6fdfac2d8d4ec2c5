"""What a finished plan, stage, prod or drill job says: its summary, built from the engine's results.

The engine returns typed results (restore.api) and the job store keeps their dicts; the words
people read are made here, once, for every transport.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from restore.api import Plan, ProdOutcome

LISTED = 12   # tables named in a drill's lines before "and N more"


def plan_summary(plan: "Plan") -> str:
    stop = plan.stop
    where = (f"stops before {stop.tx_file}:{stop.tx_pos}{' (GTID ' + stop.gtid + ')' if stop.gtid else ''}: "
             f"{stop.reason}." if stop else f"replays to the end of the binlog ({plan.end[0]}:{plan.end[1]}).")
    return f"Plan {plan.plan_id}: {plan.transactions} transactions into {', '.join(sorted(plan.databases))}; {where}"


def verification_summary(restore: dict) -> str:
    """A restore's verified tables (`RestoreResult.to_dict()`), one phrase each."""
    tables = (restore.get("verification") or {}).get("tables", {})
    return (f"Verified {len(tables)} tables: " +
            ", ".join(f"{name} {t['rows']} rows (checksum {t['checksum']})" for name, t in sorted(tables.items())))


def prod_summary(outcome: "ProdOutcome | dict") -> str:
    """A production swap (`ProdOutcome` or its `to_dict()`): what went in, what was kept aside or left."""
    doc = outcome if isinstance(outcome, dict) else outcome.to_dict()
    aside = "; ".join(f"{db} keeps {sum(t.values())} rows the application wrote after the disaster "
                      f"({', '.join(f'{n}: {r}' for n, r in sorted(t.items()))})"
                      for db, t in doc["kept_aside"].items()) or "the live schema held nothing"
    count = sum(map(len, doc["objects"].values()))
    text = (f"Swapped {len(doc['tables'])} verified tables into production"
            f"{f', with {count} triggers, views and routines' if count else ''}. Kept aside: {aside}.")
    text += "".join(f" {db} also keeps the live schema's {', '.join(o)}." for db, o in doc["objects_aside"].items())
    text += "".join(f" Left in {db}, not in the restored copy: {', '.join(o)}." for db, o in doc["left_in_live"].items())
    if copy := doc.get("shadow_copy"):
        text += f" Shadow filled by {copy['path']}: {copy['why']}."
    return text


def drill_summary(drilled: dict) -> str:
    """A backup drill that passed (`Drilled.to_dict()`: its report and the restore's)."""
    report = drilled["drill"]
    tables = ((drilled.get("restore") or {}).get("verification") or {}).get("tables", {})
    counted, checks, archive = report["rows_predicted"], report["checksums"], report["archive"]

    def listing(names: list[str]) -> str:
        return ", ".join(f"{n} {tables[n]['rows']} rows" if n in tables else n for n in names[:LISTED]) + \
            (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")
    head = f"Drill from {Path(report['snapshot']).name} + archive"
    lines = [f"{head}: OK — restored into a sandbox and verified:",
             f"• archive: {archive['files']} file(s) read from {report['start']} to {archive['archive_end']}, "
             f"no file missing, every event CRC-checked; {report['transactions']} transactions replayed up to "
             f"{report['end']}, none skipped",
             f"• rows: {len(counted)} of {len(tables)} tables hold the row count the dump plus binlog predict"
             + (f" ({listing(counted)})" if counted else "")
             + (f"; {len(tables) - len(counted)} changed by statement-format DML, uncounted"
                if len(counted) < len(tables) else "")]
    if checks["not_compared"]:
        lines.append(f"• checksums: NOT compared: {checks['not_compared']}")
    else:
        equal, changed = checks["equal"], checks["changed_on_source_after"]
        lines.append(f"• checksums: {len(equal)} of {len(equal) + len(changed)} tables equal the source's "
                     f"CHECKSUM TABLE at {checks['at']}" + (f" ({listing(equal)})" if equal else "")
                     + (f"; {len(changed)} changed on the source since, not comparable ({listing(changed)})"
                        if changed else ""))
    lines += [f"• note: {w}" for w in report["notes"]]
    return "\n".join(lines)
