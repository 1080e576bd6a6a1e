"""The service's clock: wall time plus an offset tests move forward; timers due meanwhile fire at once."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from openbatch.common import clock
from openbatch.common.clock import ServiceClock
from openbatch.testing import LiveServer


def test_timers_fire_when_the_clock_is_moved_past_them() -> None:
    service = ServiceClock()
    fired: list[str] = []

    async def go() -> None:
        service.call_later(3600, lambda: fired.append("hour"))
        later = service.call_later(7200, lambda: fired.append("two hours"))
        service.call_later(0.01, lambda: fired.append("soon"))
        await asyncio.sleep(0.05)
        assert fired == ["soon"]
        service.advance(3600)
        await asyncio.sleep(0.01)
        assert fired == ["soon", "hour"]
        later.cancel()
        service.advance(7200)
        await asyncio.sleep(0.01)

    asyncio.run(go())
    assert fired == ["soon", "hour"]


def test_the_clock_only_moves_forward_and_keeps_its_place(tmp_path: Path) -> None:
    service = ServiceClock()
    service.keep_in(tmp_path / "clock")
    before = service.time()
    service.advance(90)
    assert service.time() - before >= 90
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError):
            service.advance(bad)
    again = ServiceClock()
    again.keep_in(tmp_path / "clock")
    assert again.offset == 90


def test_service_time_is_what_the_service_reports_real_time_what_auth_checks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clock.SERVICE, "offset", 86400.0)
    assert (clock.now() - clock.real_now()).total_seconds() > 86000
    assert abs(clock.now_us() / 1e6 - clock.SERVICE.time()) < 5


def test_a_test_server_moves_its_clock_and_keeps_it_over_a_restart() -> None:
    top = Path(tempfile.mkdtemp(prefix="openbatch-clock-"))
    server = LiveServer(top / "data", extra_args=["--test-clock"]).start()
    try:
        assert server.advance_clock(3600)["offsetSeconds"] == 3600
        server.restart()
        assert server.advance_clock(60)["offsetSeconds"] == 3660
    finally:
        server.stop()
    plain = LiveServer(top / "plain").start()
    try:
        with pytest.raises(Exception, match="404"):
            plain.advance_clock(1)
    finally:
        plain.stop()
