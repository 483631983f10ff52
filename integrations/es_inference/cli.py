"""The ``es-inference`` command: ``serve``, ``demo`` and ``embed``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence


def _embed(args: argparse.Namespace) -> int:
    from ._config import resolve_connection
    from ._endpoint import build_spec
    from ._files import count_texts, embed_to_file, read_texts
    from ._service import EmbeddingService, ServiceOptions

    service = EmbeddingService(
        resolve_connection(es_url=args.es_url),
        build_spec(
            "text_embedding",
            inference_id=args.inference_id,
            model=args.model,
            region=args.region,
            service_settings=(
                {"rate_limit": {"requests_per_minute": args.rate_limit}}
                if args.rate_limit
                else None
            ),
        ),
        ServiceOptions(concurrency=args.concurrency),
    )
    total = count_texts(args.file)
    written = embed_to_file(
        service,
        lambda: read_texts(args.file, args.field),
        total,
        args.out,
        chunk=args.chunk,
        resume=not args.restart,
    )
    print(f"wrote {written} vectors ({total} in all) to {args.out}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    import getpass
    import os

    from ._admin import rotate_aws_keys
    from ._config import resolve_connection

    access = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not (access and secret):
        if not sys.stdin.isatty():
            print(
                "es-inference: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the "
                "new keys (they are never taken from the command line)",
                file=sys.stderr,
            )
            return 2
        access = getpass.getpass("New AWS access key id: ")
        secret = getpass.getpass("New AWS secret access key: ")
    how = rotate_aws_keys(
        resolve_connection(es_url=args.es_url),
        args.inference_id,
        access,
        secret,
        force=args.force,
    )
    print(f"{args.inference_id}: AWS keys replaced ({how})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run

    report = run(top_k=args.top_k)
    return 0 if report.hits else 1


def _serve(args: Sequence[str]) -> int:
    from .local import main as serve_main

    return serve_main(list(args))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``es-inference`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        return _serve(argv[1:])

    parser = argparse.ArgumentParser(
        prog="es-inference",
        description="Elasticsearch inference endpoints for LangChain and LlamaIndex.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log requests")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve", help="run the local Elasticsearch-compatible server (see serve -h)"
    )

    demo = commands.add_parser(
        "demo", help="embed the Python reference and answer questions with it"
    )
    demo.add_argument("--top-k", type=int, default=3)
    demo.set_defaults(run=_demo)

    embed = commands.add_parser("embed", help="embed a text file into a .npy array")
    embed.add_argument("file", help="one text per line, or JSON lines with --field")
    embed.add_argument("--out", required=True, help="the .npy file to write")
    embed.add_argument("--field", help="the JSON field holding the text")
    embed.add_argument("--model", help="Bedrock model id (creates the endpoint)")
    embed.add_argument("--inference-id", help="endpoint id to use or create")
    embed.add_argument("--region", help="AWS region (default: AWS_REGION)")
    embed.add_argument(
        "--es-url", help="Elasticsearch URL (default: ELASTICSEARCH_URL)"
    )
    embed.add_argument(
        "--rate-limit",
        type=int,
        help="requests per minute to set on an endpoint this command creates "
        "(Elasticsearch's default for amazonbedrock is 240)",
    )
    embed.add_argument("--concurrency", type=int, default=16)
    embed.add_argument("--chunk", type=int, default=2048, help="texts per step")
    embed.add_argument(
        "--restart", action="store_true", help="ignore earlier progress and start over"
    )
    embed.set_defaults(run=_embed)

    rotate = commands.add_parser(
        "rotate-keys",
        help="replace an amazonbedrock endpoint's AWS keys (read from the AWS "
        "environment variables or prompted)",
    )
    rotate.add_argument("inference_id")
    rotate.add_argument(
        "--es-url", help="Elasticsearch URL (default: ELASTICSEARCH_URL)"
    )
    rotate.add_argument(
        "--force",
        action="store_true",
        help="on clusters without _update, recreate even while pipelines or "
        "indices use the endpoint",
    )
    rotate.set_defaults(run=_rotate)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # Say plainly when the local stand-in starts; keep its request chatter quiet.
        logging.getLogger("es_inference.local").setLevel(logging.INFO)
        for quiet in ("api", "models"):
            logging.getLogger(f"es_inference.local.{quiet}").setLevel(logging.WARNING)
    from ._errors import EsInferenceError

    try:
        code: int = args.run(args)
    except EsInferenceError as exc:
        print(f"es-inference: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"es-inference: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("es-inference: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
