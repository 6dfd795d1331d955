"""Progress: a bar on a terminal; in a log, plain lines at intervals instead of carriage returns."""
from __future__ import annotations

import io

from advrp2k.cli.progress import LineProgress, progress_factory


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_log_gets_one_plain_line_per_interval_and_one_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(total=1000, desc="pgd @ 8/255", interval=30, stream=out, clock=clock)
    for _ in range(1000):
        clock.now += 0.1  # 100 s in all
        bar.update(1)
    bar.set_postfix(loss="0.123")
    bar.close()
    bar.close()  # closing twice prints once
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 4  # after 30, 60 and 90 s, then the end
    assert lines[0].startswith("pgd @ 8/255: 300/1000 (30 %) after 30 s")
    assert lines[-1] == "pgd @ 8/255: 1000/1000 (100 %) done in 100 s, loss=0.123"


def test_iterating_counts_and_closes():
    out = io.StringIO()
    assert list(LineProgress(range(5), desc="decoding images", stream=out)) == [0, 1, 2, 3, 4]
    assert out.getvalue().strip().startswith("decoding images: 5/5 (100 %) done in")


def test_factory_picks_lines_off_a_terminal_and_nothing_when_asked(monkeypatch):
    monkeypatch.delenv("ADVRP2K_NO_PROGRESS", raising=False)
    assert isinstance(progress_factory(io.StringIO())(total=3, desc="x"), LineProgress)

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    assert not isinstance(progress_factory(Terminal())(total=3, desc="x"), LineProgress)
    monkeypatch.setenv("ADVRP2K_NO_PROGRESS", "1")
    assert progress_factory(io.StringIO()) is None

