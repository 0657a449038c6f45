"""Progress of a long run: a one-line bar on a terminal, log lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """Units and images done, images/s and ETA since ``start``.

    Args:
      total_units, total_images: work of this process (images: identities x (1 + K)).
      log: where lines go when ``stream`` is not a terminal (absl logging.info).
      interval: seconds between log lines (the bar redraws on every update).
    """

    def __init__(self, total_units: int, total_images: int, log: Callable[[str], None],
                 stream=None, interval: float = 10.0):
        self.total_units, self.total_images = total_units, total_images
        self.log, self.interval = log, interval
        self.stream = sys.stderr if stream is None else stream
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self._last = time.perf_counter()

    def line(self, units: int, images: int) -> str:
        dt = time.perf_counter() - self.start
        rate = images / dt if dt > 0 else 0.0
        eta = (self.total_images - images) / rate if rate > 0 else float("nan")
        eta_text = _clock(eta) if eta == eta else "?"
        return (f"units {units}/{self.total_units}  images {images}/{self.total_images}  "
                f"{rate:.1f} images/s  ETA {eta_text}")

    def update(self, units: int, images: int, force: bool = False) -> None:
        text = self.line(units, images)
        if self.tty:
            self.stream.write("\r" + text.ljust(79))
            self.stream.flush()
        elif force or time.perf_counter() - self._last >= self.interval:
            self.log(text)
            self._last = time.perf_counter()

    def close(self, units: int, images: int) -> None:
        self.update(units, images, force=True)
        if self.tty:
            self.stream.write("\n")
