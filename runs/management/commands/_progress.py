"""A progress line for export_runs and import_runs, drawn only on a terminal."""

import time


class Progress:
    """Counts items; on a terminal redraws one line (at most 5 times a second)."""

    def __init__(self, stream, unit: str) -> None:
        self.stream = stream
        self.unit = unit
        self.enabled = bool(stream is not None and stream.isatty())
        self.done = 0
        self.total = None
        self.started = self.last = time.monotonic()

    def start(self, total) -> None:
        self.total = total
        self.started = self.last = time.monotonic()

    def add(self, n: int) -> None:
        self.done += n
        self.draw()

    def set(self, done: int, note: str = "") -> None:
        self.done = done
        self.draw(note)

    def draw(self, note: str = "", force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self.last < 0.2:
            return
        self.last = now
        rate = self.done / max(now - self.started, 1e-9)
        if self.total:
            share = min(self.done / self.total, 1.0)
            bar = "#" * int(share * 30)
            line = f"[{bar:<30}] {self.done:,}/{self.total:,} {self.unit}"
        else:
            line = f"{self.done:,} {self.unit}"
        self.stream.write(f"\r{line} {rate:,.0f}/s {note}\x1b[K")
        self.stream.flush()

    def finish(self) -> int:
        """Ends the line; returns the count."""
        if self.enabled:
            self.draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
        return self.done
