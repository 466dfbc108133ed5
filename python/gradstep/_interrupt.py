"""Ctrl-C during `fit`: finish the batch being trained, then stop cleanly.

Python raises KeyboardInterrupt between any two bytecodes, which in the layer-by-layer path can
fall between the updates of two parameters of one optimizer step. While `deferred()` is active
(main thread only, and only when SIGINT has Python's default handler), the first Ctrl-C only
sets `requested`; the training loop checks it after each batch, stops, and raises
KeyboardInterrupt itself with the model in a consistent state. A second Ctrl-C interrupts at once.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class _Flag:
    requested = False


@contextlib.contextmanager
def deferred() -> Iterator[_Flag]:
    flag = _Flag()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield flag  # someone else handles SIGINT here (a worker thread, an embedding app): leave it
        return

    def handler(signum, frame):
        flag.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts at once

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
