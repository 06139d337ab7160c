"""A client in a thread that asks MessengerIn one request after another until stopped, and counts."""
from __future__ import annotations

import threading
import time

import numpy as np

from ..ext import Client


class SteadyAsker:
    """Asks ``endpoint`` with the rows of ``vectors`` in turn (``pause_s`` between requests)."""

    def __init__(self, endpoint: str, vectors: np.ndarray, pause_s: float = 0.0, timeout_s: float = 30.0):
        self.outcomes = {"ok": 0, "errors": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(endpoint, vectors, pause_s, timeout_s))

    def __enter__(self) -> "SteadyAsker":
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self, endpoint: str, vectors: np.ndarray, pause_s: float, timeout_s: float) -> None:
        client = Client(endpoint)
        try:
            i = 0
            while not self._stop.is_set():
                reply = client.ask(vector=vectors[i % len(vectors)].tolist(), timeout=timeout_s)
                self.outcomes["ok" if reply["ok"] else "errors"] += 1
                i += 1
                time.sleep(pause_s)
        finally:
            client.close()
