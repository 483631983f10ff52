"""The ``es-inference`` command: ``demo``, ``embed``, ``serve`` and ``rotate-keys``.

``-v`` goes before or after the command name. Failures print one line to stderr
and exit with 1; bad usage exits with 2, Ctrl-C with 130 (``serve``: 0, as Ctrl-C is
how it stops).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

EPILOG = (
    "Run 'es-inference COMMAND -h' for a command's options. Exit status: 0 done, "
    "1 failed, 2 bad usage, 130 interrupted."
)


class _CommandError(Exception):
    """A command cannot go on; the message is printed, ``status`` is the exit."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


_CREDENTIALS = (
    "the command reads Elasticsearch credentials from ELASTICSEARCH_API_KEY, or "
    "ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD"
)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _output_path(out: str) -> Path:
    path = Path(out)
    if path.is_dir():
        raise _CommandError(f"--out {out!r} is a folder; name the .npy file to write")
    if not path.resolve().parent.is_dir():
        raise _CommandError(
            f"cannot write {out!r}: the folder {str(path.parent)!r} does not exist"
        )
    return path


def _embed(args: argparse.Namespace) -> int:
    from ._config import resolve_connection
    from ._endpoint import build_spec
    from ._files import count_texts, embed_to_file, read_texts
    from ._service import EmbeddingService, ServiceOptions

    if not (args.model or args.inference_id):
        raise _CommandError(
            "embed needs --inference-id of an existing endpoint, or --model to "
            "create one",
            status=2,
        )
    out = _output_path(args.out)
    try:
        total = count_texts(args.file)
    except OSError as exc:
        raise _CommandError(
            f"cannot read the input file {args.file!r}: {_reason(exc)}"
        ) from None

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
    written = embed_to_file(
        service,
        lambda: read_texts(args.file, args.field),
        total,
        out,
        chunk=args.chunk,
        resume=not args.restart,
    )
    if written == 0 and total > 0:
        print(
            f"{args.out} already holds all {total} vectors; nothing to do "
            "(--restart embeds them again)"
        )
    else:
        print(f"wrote {written} vectors ({total} in all) to {args.out}")
    return 0


def _new_keys() -> tuple[str, str]:
    import getpass
    import os

    access = os.environ.get("AWS_ACCESS_KEY_ID")
    secret = os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access and secret:
        return access, secret
    if not sys.stdin.isatty():
        raise _CommandError(
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY to the new keys (they "
            "are never taken from the command line)",
            status=2,
        )
    try:
        access = getpass.getpass("New AWS access key id: ").strip()
        secret = getpass.getpass("New AWS secret access key: ").strip()
    except EOFError:
        access = secret = ""
    if not (access and secret):
        raise _CommandError("no new AWS keys given; nothing was changed", status=2)
    return access, secret


def _rotate(args: argparse.Namespace) -> int:
    from ._admin import rotate_aws_keys
    from ._config import resolve_connection

    access, secret = _new_keys()
    how = rotate_aws_keys(
        resolve_connection(es_url=args.es_url),
        args.inference_id,
        access,
        secret,
        force=args.force,
    )
    print(f"{args.inference_id}: AWS keys replaced ({how})")
    return 0


#: Packages the demo imports beyond the core install (the extras it needs).
_DEMO_PACKAGES = ("langchain_core", "llama_index")


def _demo(args: argparse.Namespace) -> int:
    try:
        from ._demo import run

        report = run(top_k=args.top_k)
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if package not in _DEMO_PACKAGES:
            raise
        raise _CommandError(
            f"the demo needs {package!r}, which is not installed: "
            "pip install 'es-inference[all]'"
        ) from None
    return 0 if report.hits else 1


def _serve(args: argparse.Namespace) -> int:
    from .local._cli import run

    return run(args)


def _verbose(parser: argparse.ArgumentParser, what: str, top: bool = False) -> None:
    # Given after the command, -v must not reset a -v given before it: the
    # command's default is SUPPRESS, so only the top level sets the default.
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help=what,
    )


def _parser() -> argparse.ArgumentParser:
    from . import __version__
    from .local import _cli as local_cli

    parser = argparse.ArgumentParser(
        prog="es-inference",
        description="Elasticsearch inference endpoints for LangChain and LlamaIndex.",
        epilog=EPILOG,
    )
    _verbose(parser, "log each request (also accepted after the command)", top=True)
    version = f"%(prog)s {__version__}"
    parser.add_argument("--version", action="version", version=version)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    client_logs = "log each request to Elasticsearch"

    serve = commands.add_parser(
        "serve",
        help="run the local Elasticsearch-compatible server",
        description=local_cli.DESCRIPTION,
        epilog=local_cli.EPILOG,
    )
    local_cli.add_arguments(serve)
    _verbose(serve, "log every request the server answers")
    serve.set_defaults(run=_serve)

    demo = commands.add_parser(
        "demo",
        help="embed the Python reference and answer questions with it",
        description="Embed the Python language reference and answer questions "
        "with LangChain and LlamaIndex. Uses ELASTICSEARCH_URL if set, else "
        "starts the local server on a free loopback port.",
    )
    demo.add_argument(
        "--top-k",
        type=_positive,
        default=3,
        help="passages retrieved per question (default: 3)",
    )
    _verbose(demo, client_logs)
    demo.set_defaults(run=_demo)

    embed = commands.add_parser(
        "embed",
        help="embed a text file into a .npy array",
        description="Embed a text file into a .npy array of float32 rows, in "
        "bounded memory; after an interruption, the same command resumes. "
        "Elasticsearch credentials come from ELASTICSEARCH_API_KEY (or "
        "ELASTICSEARCH_USERNAME/ELASTICSEARCH_PASSWORD), AWS keys for a new "
        "endpoint from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY.",
    )
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
        type=_positive,
        help="requests per minute to set on an endpoint this command creates "
        "(Elasticsearch's default for amazonbedrock is 240)",
    )
    embed.add_argument(
        "--concurrency",
        type=_positive,
        default=16,
        help="requests in flight at once (default: 16)",
    )
    embed.add_argument(
        "--chunk",
        type=_positive,
        default=2048,
        help="texts per step; memory holds one step (default: 2048)",
    )
    embed.add_argument(
        "--restart", action="store_true", help="ignore earlier progress and start over"
    )
    _verbose(embed, client_logs)
    embed.set_defaults(run=_embed)

    rotate = commands.add_parser(
        "rotate-keys",
        help="replace an amazonbedrock endpoint's AWS keys",
        description="Replace an amazonbedrock endpoint's AWS keys. The new keys "
        "come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or are prompted "
        "for without echo; never from the command line.",
    )
    rotate.add_argument("inference_id", help="the endpoint whose keys to replace")
    rotate.add_argument(
        "--es-url", help="Elasticsearch URL (default: ELASTICSEARCH_URL)"
    )
    rotate.add_argument(
        "--force",
        action="store_true",
        help="on clusters without _update, recreate even while pipelines or "
        "indices use the endpoint",
    )
    _verbose(rotate, client_logs)
    rotate.set_defaults(run=_rotate)
    return parser


def _client_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        # Say plainly when the local stand-in starts; keep its request chatter quiet.
        logging.getLogger("es_inference.local").setLevel(logging.INFO)
        for quiet in ("api", "models"):
            logging.getLogger(f"es_inference.local.{quiet}").setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``es-inference`` console script."""
    try:
        return _main(sys.argv[1:] if argv is None else list(argv))
    except KeyboardInterrupt:
        print("es-inference: interrupted", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "serve":
        # The server sets up its own logging (with timestamps) and its exits.
        code: int = args.run(args)
        return code
    _client_logging(args.verbose)

    from ._errors import AuthenticationError, EsInferenceError

    try:
        code = args.run(args)
    except _CommandError as exc:
        print(f"es-inference: {exc}", file=sys.stderr)
        return exc.status
    except AuthenticationError as exc:
        print(f"es-inference: {exc}; {_CREDENTIALS}", file=sys.stderr)
        return 1
    except EsInferenceError as exc:
        print(f"es-inference: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"es-inference: {where}{_reason(exc)}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
