"""A real `python -m retriever serve` for the benchmarks: a free 127.0.0.1 port, stopped by its own pid."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
# Benchmarks measure the service, not the limiter, and a version swap mid-run would be noise. The answer
# cache is off unless a benchmark turns it on: repeated queries would measure the cache, not the model.
QUIET_ENV = {"RETRIEVER_RATE_LIMIT": "", "RETRIEVER_RELOAD_POLL_SECONDS": "0", "RETRIEVER_CACHE_SIZE": "0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """The server, started and ready (``/readyz``) when constructed; its output kept for a failed start."""

    def __init__(self, index: str | Path, workers: int = 2, args: tuple[str, ...] = (), env: dict | None = None,
                 start_seconds: float = 180) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        command = [sys.executable, "-m", "retriever", "serve", "--index", str(index), "--port", str(self.port),
                   "--workers", str(workers), *args]
        self.process = subprocess.Popen(command, cwd=REPO, stdout=self.log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **QUIET_ENV, **(env or {})})
        deadline = time.monotonic() + start_seconds
        while True:
            try:
                urllib.request.urlopen(self.url + "/readyz", timeout=2)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = self._output()
                    self.stop()
                    sys.exit(f"error: the server did not start:\n{output}")
                time.sleep(0.3)

    def _output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")[-3000:]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=60)  # in-flight requests finish (graceful timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@contextlib.contextmanager
def served(index: str | Path, workers: int = 2, args: tuple[str, ...] = (),
           env: dict | None = None) -> Iterator[ServerProcess]:
    server = ServerProcess(index, workers, args, env)
    try:
        yield server
    finally:
        server.stop()
