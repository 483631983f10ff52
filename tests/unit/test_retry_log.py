"""Retry lines come in stretches: one WARNING to start, DEBUG after, one summary."""

from __future__ import annotations

import gc
import logging
import re
import threading

import pytest

from es_inference import RetryPolicy, ServerError, TooManyRequestsError, _retry
from es_inference._errors import ConnectionError, RequestTimeout, ResponseDecodeError
from es_inference._retry import Attempts, RetryLog, failure_kind

TARGET = "POST /_inference/text_embedding/e"
THROTTLED = TooManyRequestsError(429, "status_exception", "slow down")
TIMEOUT = RequestTimeout("POST /x: no answer in time (ReadTimeout)")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    """Keeps (level, message) of every record of one logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []
        self._lock_lines = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock_lines:
            self.lines.append((record.levelno, record.getMessage()))

    def at(self, level: int) -> list[str]:
        return [message for levelno, message in self.lines if levelno == level]


@pytest.fixture
def lines() -> Lines:
    handler = Lines()
    log = logging.getLogger("test.retry_log")
    log.handlers = [handler]
    log.setLevel(logging.DEBUG)
    log.propagate = False
    return handler


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def log(clock: Clock) -> RetryLog:
    return RetryLog(logging.getLogger("test.retry_log"), clock=clock)


def test_a_lone_retry_is_one_warning_and_no_summary(
    log: RetryLog, lines: Lines
) -> None:
    log.join(TARGET)
    log.retry(TARGET, 1, THROTTLED, 0.25)
    log.leave(TARGET)
    assert lines.lines == [
        (
            logging.WARNING,
            f"retrying {TARGET} (attempt 1 failed: {THROTTLED}) in 0.25s",
        )
    ]


def test_further_retries_are_debug_and_the_stretch_ends_with_a_summary(
    log: RetryLog, lines: Lines, clock: Clock
) -> None:
    log.join(TARGET)
    for attempt, error in enumerate([THROTTLED, THROTTLED, TIMEOUT], start=1):
        log.retry(TARGET, attempt, error, 0.5)
        clock.now += 1.0
    log.leave(TARGET, gave_up=True)
    assert len(lines.at(logging.WARNING)) == 2
    assert lines.at(logging.DEBUG) == [
        f"retrying {TARGET} (attempt 2 failed: {THROTTLED}) in 0.50s; "
        "2 retries of it in 1 s so far",
        f"retrying {TARGET} (attempt 3 failed: {TIMEOUT}) in 0.50s; "
        "3 retries of it in 2 s so far",
    ]
    assert lines.at(logging.WARNING)[-1] == (
        f"{TARGET}: 1 request retried 3 times in 3.0 s (429 ×2, timeout ×1) and gave up"
    )


def test_a_long_stretch_warns_again_once_a_minute(
    log: RetryLog, lines: Lines, clock: Clock
) -> None:
    log.join(TARGET)
    for attempt in range(1, 122):
        log.retry(TARGET, attempt, THROTTLED, 1.0)
        clock.now += 1.0
    warnings = lines.at(logging.WARNING)
    assert len(warnings) == 3  # at 0 s, 60 s and 120 s
    assert warnings[1].endswith(
        "in 1.00s; 61 retries of it in 60 s so far, the others logged at DEBUG"
    )
    assert len(lines.at(logging.DEBUG)) == 118


def test_overlapping_requests_share_one_stretch(log: RetryLog, lines: Lines) -> None:
    log.join(TARGET)
    log.retry(TARGET, 1, THROTTLED, 0.1)
    log.join(TARGET)
    log.retry(TARGET, 1, THROTTLED, 0.1)
    log.leave(TARGET, gave_up=True)
    log.join("GET /other")  # another target is a stretch of its own
    log.retry("GET /other", 1, TIMEOUT, 0.1)
    log.leave("GET /other")
    log.retry(TARGET, 2, ServerError(503, "status_exception", "busy"), 0.1)
    assert len(lines.at(logging.WARNING)) == 2  # no summary while one is in flight
    log.leave(TARGET)
    assert lines.at(logging.WARNING)[-1] == (
        f"{TARGET}: 2 requests retried 3 times in 0.0 s (429 ×2, 503 ×1); "
        "1 of them gave up"
    )


def test_many_threads_lose_no_retry(log: RetryLog, lines: Lines) -> None:
    start = threading.Barrier(8)

    def request() -> None:
        start.wait()
        log.join(TARGET)
        for attempt in range(1, 101):
            log.retry(TARGET, attempt, THROTTLED, 0.0)
        log.leave(TARGET)

    threads = [threading.Thread(target=request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    summaries = [
        re.fullmatch(
            rf"{TARGET}: (\d+) requests? retried ([\d,]+) times in [\d.]+ s "
            r"\(429 ×([\d,]+)\)",
            line,
        )
        for line in lines.at(logging.WARNING)
        if not line.startswith("retrying ")
    ]
    assert all(summaries)
    found = [match for match in summaries if match is not None]
    assert sum(int(match[1]) for match in found) == 8
    assert sum(int(match[2].replace(",", "")) for match in found) == 800
    retrying = [line for _, line in lines.lines if line.startswith("retrying ")]
    assert len(retrying) == 800


def test_a_request_freed_without_closing_still_ends_its_stretch(
    log: RetryLog, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_retry, "RETRY_LOG", log)
    attempts = Attempts(TARGET, RetryPolicy(max_attempts=5, initial_backoff=0.0))
    for _ in range(3):
        attempts.next_wait()
        assert attempts.failed(THROTTLED) is not None
    del attempts  # e.g. a stream its reader stopped reading
    gc.collect()
    assert len(lines.at(logging.WARNING)) == 1
    log.join("GET /other")  # the next use of the log applies the leave
    assert lines.at(logging.WARNING)[-1] == (
        f"{TARGET}: 1 request retried 3 times in 0.0 s (429 ×3)"
    )


def test_attempts_leave_once_however_they_end(
    log: RetryLog, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_retry, "RETRY_LOG", log)
    attempts = Attempts(TARGET, RetryPolicy(max_attempts=3, initial_backoff=0.0))
    for _ in range(2):
        attempts.next_wait()
        assert attempts.failed(THROTTLED) is not None
    attempts.next_wait()
    assert attempts.failed(THROTTLED) is None  # out of attempts: gave up
    attempts.close()
    attempts.succeeded()
    assert lines.at(logging.WARNING) == [
        f"retrying {TARGET} (attempt 1 failed: {THROTTLED}) in 0.00s",
        f"{TARGET}: 1 request retried 2 times in 0.0 s (429 ×2) and gave up",
    ]


def test_requests_that_never_retry_write_nothing(
    log: RetryLog, lines: Lines, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_retry, "RETRY_LOG", log)
    for _ in range(3):
        attempts = Attempts(TARGET, RetryPolicy())
        attempts.next_wait()
        attempts.succeeded()
        attempts.close()
    attempts = Attempts(TARGET, RetryPolicy())
    attempts.next_wait()
    assert attempts.failed(ServerError(400, "x", "bad")) is None
    assert lines.lines == []


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (THROTTLED, "429"),
        (ServerError(504, "", "gateway"), "504"),
        (
            ServerError(
                500, "status_exception", "x", caused_by={"type": "throttling_exception"}
            ),
            "500 throttling_exception",
        ),
        (ServerError(500, "timeout_exception", "queue"), "500 timeout_exception"),
        (TIMEOUT, "timeout"),
        (ConnectionError("x", opened=True), "connection dropped"),
        (ConnectionError("x"), "no connection"),
        (ResponseDecodeError("x"), "body cut off"),
    ],
)
def test_failures_are_summed_up_by_kind(error: Exception, kind: str) -> None:
    assert failure_kind(error) == kind
