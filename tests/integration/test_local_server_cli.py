"""``python -m es_inference.local`` starts a server and stops cleanly on Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import es_inference
from es_inference.local import main


def test_command_line_serves_until_interrupted() -> None:
    env = dict(os.environ)
    package_root = str(Path(es_inference.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (package_root, env.get("PYTHONPATH")) if p
    )
    command = [
        sys.executable,
        "-m",
        "es_inference.local",
        "--port",
        "0",
        "--model",
        "hashing",
        "--api-key",
        "cli-key",
        "--es-version",
        "8.19.1",
        "--p-503",
        "1",
    ]
    with subprocess.Popen(
        command, env=env, stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        url = None
        for line in process.stderr:
            match = re.search(r"listening on (http://[^\s:]+:\d+)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "the server never said where it listens"
        info = httpx.get(
            url + "/", headers={"Authorization": "ApiKey cli-key"}, timeout=5
        )
        assert info.json()["version"]["number"] == "8.19.1"
        process.send_signal(signal.SIGINT)
        rest = process.stderr.read()
        assert process.wait(timeout=10) == 0
    assert "cli-key" not in rest
    assert "stopped" in rest


def test_invalid_options_exit_with_an_error(caplog: pytest.LogCaptureFixture) -> None:
    assert main(["--p-429", "2", "--model", "hashing"]) == 1
    assert "p_429 must be between 0 and 1" in caplog.text


def test_serve_help_documents_every_fault_option(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from es_inference.cli import main as cli_main

    with pytest.raises(SystemExit) as info:
        cli_main(["serve", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, words in [
        ("--latency-ms LATENCY_MS", "latency of every inference request"),
        ("--latency-jitter-ms LATENCY_JITTER_MS", "extra delay per inference"),
        ("--p-429 P_429", "probability of the '429' fault"),
        ("--p-timeout P_TIMEOUT", "probability of the 'timeout' fault"),
        ("--p-throttle P_THROTTLE", "probability of the 'throttle' fault"),
        ("--p-503 P_503", "probability of the '503' fault"),
        ("--p-reset P_RESET", "probability of the 'reset' fault"),
        ("--p-truncate P_TRUNCATE", "probability of the 'truncate' fault"),
        ("--seed SEED", "seed of fault draws"),
        ("--rate-limit", "enforce each endpoint's rate_limit.requests_per_minute"),
        ("--queue-timeout QUEUE_TIMEOUT", "seconds a request may wait"),
    ]:
        assert f"{option} {words}" in text, option
