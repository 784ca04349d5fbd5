"""The console's read models that need no Redis: a waiting line's score read back into the
priority band and arrival time that scripts/queue_admit.lua packed into it."""

from __future__ import annotations

import pytest

from zart_es.ops._console import PRIORITY_BAND, QUEUE_EPOCH_MS, Holder, _waiter
from zart_es.ops._listing import stream_position

pytestmark = pytest.mark.pure

ARRIVAL = 1_796_274_657_576  # 2026-12-03


@pytest.mark.parametrize("priority", [-1000, -5, 0, 1, 10, 1000])
@pytest.mark.parametrize("bumped", [0, 1, 37])
def test_a_waiting_score_gives_back_its_priority_and_arrival(priority: int, bumped: int) -> None:
    # the script's score; "bumped" is the +1s that keep arrival order within a millisecond
    score = float(-priority * PRIORITY_BAND + (ARRIVAL - QUEUE_EPOCH_MS) + bumped)
    assert _waiter("x", score) == Holder("x", ARRIVAL + bumped, priority)


def test_stream_ids_compare_as_numbers() -> None:
    assert stream_position("0-0") == (0, 0)
    assert stream_position("1796274657576-12") == (1_796_274_657_576, 12)
