"""The stopwatch books each lap's seconds under its name, and a repeated name accumulates."""

from __future__ import annotations

from alignment.stopwatch import Stopwatch


def test_laps_book_the_time_since_the_previous_lap_and_repeated_names_add_up():
    ticks = iter([10.0, 12.5, 13.0, 17.0])
    clock = Stopwatch(now=lambda: next(ticks))  # starts at 10.0
    assert clock.lap("load") == 2.5
    assert clock.lap("train") == 0.5
    assert clock.lap("load") == 4.0
    assert clock.seconds == {"load": 6.5, "train": 0.5}
    assert clock.total == 7.0
    assert clock.rounded() == {"load": 6.5, "train": 0.5}
