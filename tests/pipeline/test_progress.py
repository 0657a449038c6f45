"""Progress: a redrawn bar on a terminal, throttled log lines otherwise."""

import io

from jaxfair.pipeline.progress import Progress


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_terminal_gets_a_bar_redrawn_in_place():
    out = Tty()
    p = Progress(10, 40, log=lambda s: None, stream=out)
    p.update(2, 8)
    p.close(10, 40)
    text = out.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n")
    assert "units 2/10  images 8/40" in text and "units 10/10  images 40/40" in text
    assert "images/s" in text and "ETA" in text


def test_log_lines_are_throttled_when_not_a_terminal():
    lines = []
    p = Progress(3, 3, log=lines.append, stream=io.StringIO(), interval=3600)
    p.update(1, 1)
    p.update(2, 2)
    p.close(3, 3)
    assert len(lines) == 1 and lines[0].startswith("units 3/3  images 3/3")


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_work_inside_a_step_has_a_rate_and_an_eta_without_the_first_call():
    clock, lines = Clock(), []
    p = Progress(0, 0, log=lines.append, stream=io.StringIO(), interval=30, clock=clock)
    p.work("planner evaluations", 0, 1000)
    clock.t = 100.0  # the first call compiles
    p.work("planner evaluations", 100, 1000)
    clock.t = 110.0
    p.work("planner evaluations", 200, 1000)  # 10 evaluations/s since the first call
    assert lines == ["planner evaluations 100/~1,000  1/s  ETA 0:15:00"]  # at 100 s
    clock.t = 145.0  # nothing new for 35 s: the heartbeat's tick still logs
    p.tick()
    assert lines[-1] == "planner evaluations 200/~1,000  10/s  ETA 0:00:45"
    clock.t = 150.0
    p.tick()  # within the interval: nothing
    assert len(lines) == 2


def test_rates_keep_three_significant_digits():
    clock, lines = Clock(), []
    p = Progress(10, 10, log=lines.append, stream=io.StringIO(), interval=0, clock=clock)
    p.begin_units(10, 10)
    clock.t = 64.0
    p.update(2, 2)
    assert "0.0312 images/s  ETA 0:04:16" in lines[-1]


def test_heartbeat_logs_while_a_call_runs():
    lines = []
    p = Progress(1, 1, log=lines.append, stream=io.StringIO(), interval=0.05)
    p.work("search evaluations", 0, 10)
    with p.heartbeat(period=0.01):
        import time
        time.sleep(0.3)
    assert len(lines) >= 2
