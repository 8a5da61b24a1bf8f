"""Progress reporting for the long calls: a tqdm bar when tqdm is installed, or the caller's callable."""

from __future__ import annotations

from typing import Callable, Optional, Union

ProgressArg = Union[bool, None, Callable[[int, int], None]]


class Progress:
    """The callable handed to the native code: called with (done, total) after each block or window.

    progress=True draws a tqdm bar when tqdm is importable (silently nothing otherwise),
    False/None reports nothing, and a callable is called as callable(done, total). The native side
    checks for Ctrl-C before every call, whatever this is.
    """

    def __init__(self, progress: ProgressArg, desc: str, unit: str):
        self._fn: Optional[Callable[[int, int], None]] = None
        self._bar = None
        self._desc, self._unit = desc, unit
        if callable(progress):
            self._fn = progress
        elif progress:
            try:
                import tqdm  # noqa: F401

                self._fn = self._tqdm
            except ImportError:
                self._fn = None

    def _tqdm(self, done: int, total: int) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=self._desc, unit=self._unit)
        self._bar.update(done - self._bar.n)

    def __call__(self, done: int, total: int) -> None:
        if self._fn is not None:
            self._fn(done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
