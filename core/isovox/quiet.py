"""Native libraries' chatter kept off the terminal: ITK's MetaIO and GDCM print to the process's
stderr (file descriptor 2) from C++, nibabel logs header repairs, numpy warns on overflowing casts.
isovox reports what matters itself, in one line; these helpers hold the rest back.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from typing import Iterator


class Captured:
    """What a native library wrote to stderr inside :func:`native_stderr` (for messages)."""

    text = ""


@contextlib.contextmanager
def native_stderr() -> Iterator[Captured]:
    """Redirect file descriptors 1 and 2 to a temporary file for the block (C++ writes bypass Python's
    streams; ITK's MetaIO prints some failures to stdout)."""
    captured = Captured()
    fds = [1, 2]  # the process's descriptors, whatever Python's streams are wrapped in
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        try:
            yield captured
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            _flush_c_stdio()
            for fd, copy in zip(fds, saved):
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            captured.text = sink.read(4096).decode("utf-8", "replace").strip()


def _flush_c_stdio() -> None:
    """C++ streams synced with C stdio sit in libc's buffers: flush them into the sink, not the terminal."""
    try:
        import ctypes

        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # no C library to call (not on this platform)
        pass


@contextlib.contextmanager
def quiet_nibabel() -> Iterator[None]:
    """nibabel logs header repairs ("pixdim[1,2,3] should be positive") at WARNING and ERROR level."""
    logger = logging.getLogger("nibabel")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)
