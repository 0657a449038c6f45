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
