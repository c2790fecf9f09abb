"""A progress display for long work: tqdm when installed, else a line on stderr."""

from __future__ import annotations

import sys
import time


class Progress:
    """tqdm when it is installed; otherwise a plain progress line on stderr."""

    def __init__(self, total: int, desc: str, enabled: bool, unit: str = "run") -> None:
        self.total, self.desc, self.done, self.unit = total, desc, 0, unit
        self.enabled = enabled and total > 0
        self._bar = None
        self._start = time.perf_counter()
        self._last = -1.0
        if self.enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self._bar = tqdm(total=total, desc=desc, unit=unit, leave=False)

    def update(self, n: int = 1) -> None:
        self.done += n
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.perf_counter()
        if now - self._last < 0.5 and self.done < self.total:
            return
        self._last = now
        tty = sys.stderr.isatty()
        line = (f"{self.desc}: {self.done}/{self.total} {self.unit}s "
                f"({100 * self.done / self.total:.0f}%, {now - self._start:.1f} s)")
        sys.stderr.write(("\r" + line) if tty else (line + "\n"))
        sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled and sys.stderr.isatty():
            sys.stderr.write("\n")
            sys.stderr.flush()
