"""A config file that is re-read when it changes, without a restart (key file, price table).

Polls ``os.stat`` every ``interval`` seconds. A Kubernetes Secret or ConfigMap mount updates by
swapping a ``..data`` symlink: the path stays the same but ``stat`` (which follows links) reports
another inode, so the swap is seen like any rewrite. The content hash decides whether anything
really changed. A file that fails to parse leaves the previous value in force: a bad edit must not
lock every tenant out.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("inferstack.filters")


class WatchedFile(Generic[T]):
    def __init__(self, path: str, parse: Callable[[str], T], what: str) -> None:
        self.path = path
        self._parse = parse
        self._what = what
        self._signature: tuple[int, int, int, int] | None = None
        self._digest = b""
        self.reloads = 0
        self.errors = 0
        self.value: T = self._read(initial=True)  # type: ignore[assignment]

    def poll(self) -> bool:
        """Re-read if the file changed; True when a new value took effect."""
        try:
            st = os.stat(self.path)
        except OSError:
            if self._signature is not None:
                log.error("%s %s is gone; keeping the last good version", self._what, self.path)
                self._signature = None
                self.errors += 1
            return False
        signature = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
        if signature == self._signature:
            return False
        self._signature = signature
        return self._read(initial=False) is not None

    def _read(self, *, initial: bool) -> T | None:
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                raw = f.read()
            self._signature = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
            digest = hashlib.sha256(raw).digest()
            if digest == self._digest:
                return None
            value = self._parse(raw.decode())
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            if initial:
                raise ValueError(f"{self._what} {self.path}: {exc}") from None
            self.errors += 1
            log.error("%s %s not reloaded (%s); keeping the last good version", self._what, self.path, exc)
            return None
        self._digest = digest
        self.value = value
        if not initial:
            self.reloads += 1
            log.info("%s %s reloaded", self._what, self.path)
        return value

    async def run(self, interval: float, on_change: Callable[[T], None] | None = None) -> None:
        """Poll forever (a lifespan task; cancel it to stop)."""
        while True:
            await asyncio.sleep(interval)
            if self.poll() and on_change is not None:
                on_change(self.value)
