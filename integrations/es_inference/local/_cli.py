"""Command line for the local server: ``python -m es_inference.local``.

``es-inference serve`` takes the same options: :func:`add_arguments` adds them to its
parser and :func:`run` serves with the parsed values.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence

from ._faults import FaultConfig
from ._models import BASE_MODELS
from ._server import serve

__all__ = ["API_KEY_ENV", "add_arguments", "api_key", "main", "run"]

logger = logging.getLogger("es_inference.local")

#: Environment variable holding the API key when no key option is given.
API_KEY_ENV = "ES_INFERENCE_LOCAL_API_KEY"

DESCRIPTION = (
    "Run a local stand-in for Elasticsearch's inference API (amazonbedrock "
    "endpoints answered by local models). No request leaves this machine. "
    "Ctrl-C stops it."
)

EPILOG = (
    "API key: --api-key-file or the environment variable "
    f"{API_KEY_ENV} keep the key out of the process list, where --api-key shows it "
    f"to every user of this machine. An option wins over {API_KEY_ENV}; with "
    "neither, every request is accepted. The key is never printed or logged."
)


class _ApiKeyError(Exception):
    """The API key could not be read or cannot be used."""


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(
            f"must be 0 to 65535 (0: any free), got {port}"
        )
    return port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the server's options (all but ``-v``) to ``parser``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port",
        type=_port,
        default=9200,
        help="port to listen on (0: any free port, named in the start-up line)",
    )
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument(
        "--api-key",
        metavar="KEY",
        help="require 'Authorization: ApiKey KEY' on every request (visible to "
        "other users in the process list; prefer --api-key-file or "
        f"{API_KEY_ENV})",
    )
    keys.add_argument(
        "--api-key-file",
        metavar="PATH",
        help="like --api-key, with the key read from this file (one line)",
    )
    parser.add_argument(
        "--es-version", default="9.1.0", help="Elasticsearch version to emulate"
    )
    parser.add_argument(
        "--model", choices=BASE_MODELS, default="wordllama", help="local base model"
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="latency of every inference request in milliseconds, counted from "
        "its arrival (the server's own work is part of it)",
    )
    parser.add_argument(
        "--latency-jitter-ms",
        type=float,
        default=0.0,
        help="extra delay per inference request, drawn from 0 to this many ms",
    )
    for kind in ("429", "timeout", "throttle", "503", "reset", "truncate"):
        parser.add_argument(
            f"--p-{kind}",
            type=float,
            default=0.0,
            dest=f"p_{kind}",
            help=f"probability of the '{kind}' fault per inference request",
        )
    parser.add_argument("--seed", type=int, default=None, help="seed of fault draws")
    parser.add_argument(
        "--rate-limit",
        action="store_true",
        help="enforce each endpoint's rate_limit.requests_per_minute",
    )
    parser.add_argument(
        "--queue-timeout",
        type=float,
        default=30.0,
        help="seconds a request may wait in the rate-limit queue",
    )
    parser.add_argument(
        "--allocation-delay",
        type=float,
        default=0.0,
        help="seconds until in-cluster model deployments are allocated",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m es_inference.local", description=DESCRIPTION, epilog=EPILOG
    )
    add_arguments(parser)
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every request"
    )
    return parser


def _usable(key: str, source: str) -> str:
    if not key:
        raise _ApiKeyError(f"the API key from {source} is empty")
    if "\n" in key or "\r" in key:
        raise _ApiKeyError(f"the API key from {source} holds more than one line")
    if key != key.strip():
        raise _ApiKeyError(
            f"the API key from {source} begins or ends with whitespace, which an "
            "Authorization header cannot carry"
        )
    return key


def _read_key_file(path: str) -> str:
    source = f"--api-key-file {path!r}"
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            text = handle.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise _ApiKeyError(f"cannot read the API key file {path!r}: {reason}") from None
    except UnicodeDecodeError:
        raise _ApiKeyError(f"the API key file {path!r} is not UTF-8 text") from None
    return _usable(text.removesuffix("\n").removesuffix("\r"), source)


def api_key(
    args: argparse.Namespace, env: Mapping[str, str] | None = None
) -> tuple[str | None, str]:
    """The API key the parsed options ask for, and where it came from.

    ``--api-key`` or ``--api-key-file`` (only one may be given) win over the
    environment variable :data:`API_KEY_ENV`; with none of them there is no key.
    An empty or unreadable key is an error, never a silently open server.
    """
    env = os.environ if env is None else env
    if args.api_key is not None:
        return _usable(args.api_key, "--api-key"), "--api-key"
    if args.api_key_file is not None:
        return _read_key_file(args.api_key_file), "--api-key-file"
    if API_KEY_ENV in env:
        return _usable(env[API_KEY_ENV], API_KEY_ENV), API_KEY_ENV
    return None, "no key"


def _faults(args: argparse.Namespace) -> FaultConfig:
    return FaultConfig(
        latency_ms=args.latency_ms,
        latency_jitter_ms=args.latency_jitter_ms,
        p_429=args.p_429,
        p_timeout=args.p_timeout,
        p_throttle=args.p_throttle,
        p_503=args.p_503,
        p_reset=args.p_reset,
        p_truncate=args.p_truncate,
        seed=args.seed,
        rate_limit=args.rate_limit,
        queue_timeout_s=args.queue_timeout,
    )


def run(args: argparse.Namespace) -> int:
    """Serve with the options :func:`add_arguments` parsed until interrupted.

    Returns the exit status: 0 after Ctrl-C, 1 when the server cannot run, 130 when
    interrupted before it listens. ``args.verbose`` logs every request.
    """
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    level = logger.level
    if getattr(args, "verbose", False):
        logger.setLevel(logging.DEBUG)
    try:
        return _serve(args)
    finally:
        logger.setLevel(level)


def _serve(args: argparse.Namespace) -> int:
    try:
        key, source = api_key(args)
        faults = _faults(args)
    except (_ApiKeyError, ValueError) as exc:
        logger.error("cannot run the local server: %s", exc)
        return 1

    if key is not None:
        logger.info("every request must carry the API key from %s", source)
    try:
        serve(
            args.host,
            args.port,
            api_key=key,
            faults=faults,
            es_version=args.es_version,
            model=args.model,
            allocation_delay_s=args.allocation_delay,
        )
    except (OSError, ValueError) as exc:
        logger.error("cannot run the local server: %s", exc)
        return 1
    except KeyboardInterrupt:
        logger.info("interrupted before the server listened")
        return 130
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and serve until interrupted; returns the exit status."""
    return run(_parser().parse_args(argv))
