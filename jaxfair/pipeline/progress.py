"""Progress of a long run: a one-line bar on a terminal, log lines otherwise.

Two counters: the job's units and images, and the work inside the current step (the
planner's evaluations, a search step's evaluations, a unit's draws) with its estimated
total. Without a terminal a line goes out at most every ``interval`` seconds when a counter
moves, and, through ``heartbeat()`` (a thread calling ``tick``), at least every
``interval`` seconds while a long compiled call runs. Rates come from the work done since
the first report of a counter (its first call, compilation included, is left out once a
second report exists), so an ETA is the remaining work at the recent rate.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

DEFAULT_INTERVAL = 30.0  # seconds between log lines without a terminal


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def rate_text(x: float) -> str:
    """A rate with three significant digits (0.0312, 1.25, 37.5, 1250)."""
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


class _Counter:
    """done / total of one kind of work, with its rate and ETA."""

    def __init__(self, total: int | None, now: float, done: int = 0):
        self.total, self.done = total, done
        self.first = (now, done)  # the counter's start
        self.ref: tuple[float, int] | None = None  # first report with work done
        self.last = (now, done)

    def report(self, done: int, total: int | None, now: float) -> None:
        if self.ref is None and done > self.first[1]:
            self.ref = (now, done)
        self.done, self.total, self.last = done, total, (now, done)

    def rate(self) -> float:
        """Work per second: since the first report that had work done (so the first call's
        compilation is left out) once there is more; before that since the start."""
        for t0, d0 in [r for r in (self.ref, self.first) if r is not None]:
            if self.last[1] > d0 and self.last[0] > t0:
                return (self.last[1] - d0) / (self.last[0] - t0)
        return 0.0

    def eta(self, now: float) -> float | None:
        r = self.rate()
        if self.total is None or r <= 0:
            return None
        return max(0.0, (self.total - self.done) / r - (now - self.last[0]))


class Progress:
    """Units and images done, images/s and ETA; the current step's work (``work``).

    Args:
      total_units, total_images: work of this process (images: identities x (1 + K)).
      log: where lines go when ``stream`` is not a terminal (absl logging.info).
      stream: the terminal (default stderr).
      interval: seconds between log lines (the bar redraws on every update); default
        ``DEFAULT_INTERVAL``.
      clock: seconds (monotonic); tests pass a fake one.
    """

    def __init__(self, total_units: int, total_images: int, log: Callable[[str], None],
                 stream=None, interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        import sys

        self.total_units, self.total_images = total_units, total_images
        self.log, self.clock = log, clock
        self.interval = DEFAULT_INTERVAL if interval is None else interval
        self.stream = sys.stderr if stream is None else stream
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = self._last = clock()
        self.units = 0
        self.images = _Counter(total_images, self.start)
        self.what: str | None = None
        self.inner: _Counter | None = None
        self._lock = threading.Lock()

    def begin_units(self, total_units: int, total_images: int) -> None:
        """Sets the totals once they are known (after a dataset-wide find phase) and starts
        the images rate from now."""
        with self._lock:
            self.total_units, self.total_images = total_units, total_images
            self.images = _Counter(total_images, self.clock())

    def line(self, units: int | None = None, images: int | None = None) -> str:
        now = self.clock()
        if units is not None:
            self.units = units
        if images is not None:
            self.images.report(images, self.total_images, now)
        parts = []
        if self.total_units or self.inner is None:  # before the units: the find phase only
            eta = self.images.eta(now)
            parts.append(f"units {self.units}/{self.total_units}  images {self.images.done}/"
                         f"{self.total_images}  {rate_text(self.images.rate())} images/s  ETA "
                         f"{_clock(eta) if eta is not None else '?'}")
        if self.inner is not None:
            c = self.inner
            eta = c.eta(now)
            total = f"/~{c.total:,}" if c.total is not None else ""
            parts.append(f"{self.what} {c.done:,}{total}  {rate_text(c.rate())}/s  ETA "
                         f"{_clock(eta) if eta is not None else '?'}")
        return "  |  ".join(parts)

    def _emit(self, text: str, force: bool) -> None:
        if self.tty:
            self.stream.write("\r" + text.ljust(79))
            self.stream.flush()
        elif force or self.clock() - self._last >= self.interval:
            self.log(text)
            self._last = self.clock()

    def update(self, units: int, images: int, force: bool = False) -> None:
        with self._lock:
            self._emit(self.line(units, images), force)

    def work(self, what: str, done: int, total: int | None) -> None:
        """Reports work inside a step: ``done`` of an estimated ``total`` (None: unknown).
        A new ``what``, or ``done`` going back (the next step's count), starts a new
        counter."""
        with self._lock:
            now = self.clock()
            if self.inner is None or what != self.what or done < self.inner.done:
                self.what, self.inner = what, _Counter(total, now, done)
            else:
                self.inner.report(done, total, now)
            self._emit(self.line(), False)

    def tick(self) -> None:
        """A line if none went out for ``interval`` seconds (the heartbeat's call)."""
        with self._lock:
            if not self.tty:
                self._emit(self.line(), False)

    @contextlib.contextmanager
    def heartbeat(self, period: float = 1.0) -> Iterator[None]:
        """Calls ``tick`` every ``period`` seconds from a daemon thread while inside, so that
        lines keep coming during a long compiled call."""
        stop = threading.Event()

        def beat():
            while not stop.wait(period):
                self.tick()

        thread = threading.Thread(target=beat, name="jaxfair-progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def close(self, units: int, images: int) -> None:
        self.inner = None
        self.update(units, images, force=True)
        if self.tty:
            self.stream.write("\n")
