"""The README's first command: the whole incident on local servers, verified end to end."""
from __future__ import annotations

import pytest

from bot import drill

pytestmark = pytest.mark.mysql   # every test here starts a MariaDB server


def test_drill_restores_the_pre_disaster_state(capsys):
    assert drill.run(rounds=150) == 0
    out = capsys.readouterr().out
    assert "CHECKSUM TABLE equals the pre-disaster state: yes" in out
    assert "kept aside on prod" in out and "Drill succeeded" in out and "🚨 alert" in out and "DROP DATABASE homepage" in out
