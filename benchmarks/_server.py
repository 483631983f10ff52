"""The local server in its own process, so that its CPU is not the client's."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from ._plan import UNLIMITED_RPM, Scenario

API_KEY = "bench-api-key"
_LISTENING = re.compile(r"listening on (http://\S+?):? ")


class ServerProcess:
    """``python -m es_inference.local`` on a free loopback port.

    Args:
        latency_ms: Latency added to every inference request.
        directory: Where its log goes.
    """

    def __init__(self, latency_ms: float, directory: Path) -> None:
        self.latency_ms = latency_ms
        self._log = directory / f"server-{latency_ms:g}ms.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> ServerProcess:
        command = [
            sys.executable,
            "-m",
            "es_inference.local",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--model",
            "seeded",
            "--latency-ms",
            str(self.latency_ms),
            "--rate-limit",
        ]
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(
                command, stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            match = _LISTENING.search(self._log.read_text(errors="replace"))
            if match:
                self.url = match[1]
                return self
            if self._process.poll() is not None:
                break
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the local server did not start; see {self._log}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def cpu_seconds(self) -> float | None:
        """CPU time the server process has used so far (Linux); None elsewhere."""
        if self._process is None:
            return None
        try:
            with open(f"/proc/{self._process.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def _client(self) -> httpx.Client:
        headers = {"Authorization": f"ApiKey {API_KEY}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def create(self, scenario: Scenario) -> None:
        """Create the scenario's endpoint, with its rate limit or a high one."""
        body = {
            "service": "amazonbedrock",
            "service_settings": {
                "region": "us-east-1",
                "model": scenario.model,
                "provider": scenario.provider,
                "access_key": "AKIDBENCHMARKACCESS1",
                "secret_key": "benchmark-secret-value-0123456789",
                "rate_limit": {"requests_per_minute": scenario.rpm or UNLIMITED_RPM},
            },
        }
        path = f"/_inference/text_embedding/{scenario.inference_id}"
        with self._client() as client:
            client.delete(path, params={"force": "true"})
            client.put(path, json=body).raise_for_status()

    def capture(self, scenario: Scenario, texts: list[str], count: int) -> list[bytes]:
        """The bodies of ``count`` answers, as a client of the scenario gets them."""
        size = scenario.per_request
        path = f"/_inference/text_embedding/{scenario.inference_id}"
        bodies = []
        with self._client() as client:
            for i in range(count):
                batch = [texts[(i * size + j) % len(texts)] for j in range(size)]
                answer = client.post(path, json={"input": batch})
                answer.raise_for_status()
                bodies.append(answer.content)
        return bodies


def scratch_directory() -> tempfile.TemporaryDirectory[str]:
    """A directory for the corpus, logs and vector files of one run."""
    return tempfile.TemporaryDirectory(prefix="es-inference-bench-")


def child_environment() -> dict[str, str]:
    """The environment of row processes: this one's, unbuffered."""
    return {**os.environ, "PYTHONUNBUFFERED": "1"}
