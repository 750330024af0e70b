"""The shared client conformance scenario (clients/SCENARIO.md) passes from Python."""

from __future__ import annotations

from filestorage_client import scenario


async def test_the_conformance_scenario_holds(daemon_address: str, prefix: str, capsys) -> None:
    assert await scenario.run(daemon_address, prefix + "scenario/") == 0, capsys.readouterr().out
    assert "all 10 steps held" in capsys.readouterr().out
