"""Transfer progress bars (nnpm/progress.py): silent off a terminal, safe from many threads."""

from __future__ import annotations

import pytest


def test_progress_is_silent_when_not_on_a_terminal(capfd: pytest.CaptureFixture) -> None:
    from nnpm.progress import transfer_progress

    with transfer_progress(100) as p:
        task = p.add_file("x", 100)
        p.advance(task, 100)
        p.finish(task)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_progress_bars_are_thread_safe() -> None:
    import io
    import threading

    from rich.console import Console
    from rich.progress import Progress

    from nnpm.progress import _Bars

    progress = Progress(console=Console(file=io.StringIO()), auto_refresh=False)
    bars = _Bars(progress, 8 * 1000, "total")

    def work(i: int) -> None:
        task = bars.add_file(f"f{i}", 1000)
        for _ in range(1000):
            bars.advance(task, 1)
        bars.finish(task)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert progress.tasks[0].completed == 8000 and len(progress.tasks) == 1
