"""Command line for the local server: ``python -m es_inference.local``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from ._faults import FaultConfig
from ._models import BASE_MODELS
from ._server import serve

__all__ = ["main"]

logger = logging.getLogger("es_inference.local")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m es_inference.local",
        description=(
            "Run a local stand-in for Elasticsearch's inference API (amazonbedrock "
            "endpoints answered by local models). No request leaves this machine."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=9200, help="port to listen on")
    parser.add_argument(
        "--api-key", help="require 'Authorization: ApiKey <key>' on every request"
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
        help="delay added to every inference request, in milliseconds",
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and serve until interrupted; returns the exit status."""
    args = _parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    try:
        faults = FaultConfig(
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
        serve(
            args.host,
            args.port,
            api_key=args.api_key,
            faults=faults,
            es_version=args.es_version,
            model=args.model,
            allocation_delay_s=args.allocation_delay,
        )
    except (OSError, ValueError) as exc:
        logger.error("cannot run the local server: %s", exc)
        return 1
    return 0
