"""Command-line options: ``-v`` on either side of the command, the local server's API
key from a file or the environment, and the errors a new user meets first."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

import es_inference
from es_inference import cli, read_texts
from es_inference.cli import main as cli_main
from es_inference.local import LocalServer
from es_inference.local import main as local_main

from .helpers import API_KEY, AWS_ACCESS, AWS_SECRET, TITAN

ENV_NAME = "ES_INFERENCE_LOCAL_API_KEY"
PACKAGE_ROOT = str(Path(es_inference.__file__).resolve().parent.parent)


def _env(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("ELASTIC", "AWS_", ENV_NAME))
    }
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p
    )
    env.update(extra)
    return env


def _cli(
    args: Sequence[str], env: Mapping[str, str]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "es_inference.cli", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=120,
    )


@dataclass
class Served:
    url: str
    process: subprocess.Popen[str]
    log: list[str] = field(default_factory=list)

    def status(self, key: str | None = None) -> int:
        headers = {"Authorization": f"ApiKey {key}"} if key is not None else {}
        return httpx.get(self.url + "/", headers=headers, timeout=10).status_code


@contextmanager
def serving(args: Sequence[str], env: Mapping[str, str]) -> Iterator[Served]:
    """``es-inference serve ARGS`` in a process; stopped with Ctrl-C, which exits 0."""
    command = [sys.executable, "-m", "es_inference.cli", *args]
    command += ["--port", "0", "--model", "hashing"]
    with subprocess.Popen(
        command, env=dict(env), stderr=subprocess.PIPE, text=True
    ) as process:
        assert process.stderr is not None
        log: list[str] = []
        url = None
        for line in process.stderr:
            log.append(line)
            match = re.search(r"listening on (http://[^\s:]+:\d+)", line)
            if match:
                url = match.group(1)
                break
        assert url is not None, "".join(log)
        served = Served(url, process, log)
        try:
            yield served
        finally:
            process.send_signal(signal.SIGINT)
            served.log.append(process.stderr.read())
            assert process.wait(timeout=20) == 0, "".join(served.log)


def _stderr(served: Served) -> str:
    return "".join(served.log)


# -v before or after the command


@pytest.mark.parametrize(
    "argv",
    [
        ["serve"],
        ["demo"],
        ["embed", "texts.txt", "--out", "vectors.npy"],
        ["rotate-keys", "my-endpoint"],
    ],
    ids=lambda argv: argv[0],
)
def test_verbose_is_read_on_either_side_of_every_command(argv: list[str]) -> None:
    parser = cli._parser()
    assert parser.parse_args(argv).verbose is False
    assert parser.parse_args(["-v", *argv]).verbose is True
    assert parser.parse_args([*argv, "-v"]).verbose is True
    assert parser.parse_args(["--verbose", *argv, "--verbose"]).verbose is True


@pytest.mark.parametrize("where", ["before", "after", "absent"])
def test_serve_logs_each_request_only_when_verbose(where: str) -> None:
    args = {"before": ["-v", "serve"], "after": ["serve", "-v"], "absent": ["serve"]}
    with serving(args[where], _env()) as served:
        assert served.status() == 200
    logged = re.search(r"DEBUG es_inference\.local: GET / -> 200", _stderr(served))
    assert bool(logged) is (where != "absent"), _stderr(served)


@pytest.mark.parametrize("where", ["before", "after", "absent"])
def test_embed_logs_each_request_only_when_verbose(
    where: str, local_server: LocalServer, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("first text\nsecond text\n")
    out = tmp_path / "vectors.npy"
    command = ["embed", str(corpus), "--out", str(out), "--model", TITAN]
    command += ["--region", "us-east-1", "--es-url", local_server.url]
    command = {"before": ["-v", *command], "after": [*command, "-v"]}.get(
        where, command
    )
    env = _env(
        ELASTICSEARCH_API_KEY=API_KEY,
        AWS_ACCESS_KEY_ID=AWS_ACCESS,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
    )

    done = _cli(command, env)

    assert done.returncode == 0, done.stderr
    assert "wrote 2 vectors (2 in all)" in done.stdout
    logged = re.search(
        r"INFO es_inference\S*: POST /_inference/\S+ -> 200", done.stderr
    )
    assert bool(logged) is (where != "absent"), done.stderr
    assert API_KEY not in done.stderr and AWS_SECRET not in done.stderr


def test_rotate_keys_with_v_logs_its_request_and_names_the_missing_endpoint(
    local_server: LocalServer,
) -> None:
    env = _env(
        ELASTICSEARCH_API_KEY=API_KEY,
        AWS_ACCESS_KEY_ID=AWS_ACCESS,
        AWS_SECRET_ACCESS_KEY=AWS_SECRET,
    )
    done = _cli(["-v", "rotate-keys", "missing", "--es-url", local_server.url], env)
    assert done.returncode == 1, done.stderr
    assert "GET /_inference/missing -> 404" in done.stderr
    assert done.stderr.splitlines()[-1].startswith("es-inference: ")
    assert "missing" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr


def test_help_after_v_shows_the_server_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["-v", "serve", "--help"])
    assert info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.startswith("usage: es-inference serve ")
    assert "--api-key-file PATH like --api-key, with the key read from this" in text
    assert f"the environment variable {ENV_NAME}" in text
    assert "-v, --verbose log every request the server answers" in text


# The local server's API key


def test_api_key_from_the_environment_is_enforced_and_never_shown() -> None:
    key = "env-only-key-5581"
    with serving(["serve"], _env(**{ENV_NAME: key})) as served:
        cmdline = Path(f"/proc/{served.process.pid}/cmdline")
        if cmdline.exists():  # what ps shows every user, on Linux
            assert key.encode() not in cmdline.read_bytes()
        assert served.status() == 401
        assert served.status("some-other-key") == 401
        assert served.status(key) == 200
    text = _stderr(served)
    assert f"every request must carry the API key from {ENV_NAME}" in text
    assert key not in text


def test_api_key_file_is_read_without_its_newline(tmp_path: Path) -> None:
    key = "file-key-7731"
    path = tmp_path / "key"
    path.write_text(key + "\n")
    with serving(["serve", "--api-key-file", str(path), "-v"], _env()) as served:
        assert served.status() == 401
        assert served.status(key) == 200
    text = _stderr(served)
    assert "every request must carry the API key from --api-key-file" in text
    assert key not in text


def test_api_key_file_with_windows_line_end(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_bytes(b"crlf-key\r\n")
    with serving(["serve", "--api-key-file", str(path)], _env()) as served:
        assert served.status("crlf-key") == 200


@pytest.mark.parametrize("option", ["--api-key", "--api-key-file"])
def test_an_option_wins_over_the_environment(option: str, tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text("option-key\n")
    value = "option-key" if option == "--api-key" else str(path)
    with serving(["serve", option, value], _env(**{ENV_NAME: "env-key"})) as served:
        assert served.status("env-key") == 401
        assert served.status("option-key") == 200


def test_api_key_file_and_api_key_together_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["serve", "--api-key", "a", "--api-key-file", str(tmp_path / "k")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --api-key-file: not allowed with argument --api-key" in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the API key file '{path}': No such file or directory"),
        (b"", "the API key from --api-key-file '{path}' is empty"),
        (b"\n", "the API key from --api-key-file '{path}' is empty"),
        (
            b"secret-one\nsecret-two\n",
            "the API key from --api-key-file '{path}' holds more than one line",
        ),
        (
            b" secret-spaced\n",
            "the API key from --api-key-file '{path}' begins or ends with whitespace",
        ),
        (b"secret-\xff\n", "the API key file '{path}' is not UTF-8 text"),
    ],
    ids=["missing", "empty", "blank", "two-lines", "spaces", "not-utf8"],
)
def test_unusable_api_key_file_stops_the_server(
    content: bytes | None,
    message: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "key"
    if content is not None:
        path.write_bytes(content)
    assert local_main(["--api-key-file", str(path), "--model", "hashing"]) == 1
    assert "cannot run the local server: " + message.format(path=path) in caplog.text
    assert "secret" not in caplog.text
    assert "listening on" not in caplog.text


def test_empty_api_key_in_the_environment_stops_the_server(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_NAME, "")
    assert cli_main(["serve", "--model", "hashing"]) == 1
    assert f"the API key from {ENV_NAME} is empty" in caplog.text
    assert "listening on" not in caplog.text


def test_port_out_of_range_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["serve", "--port", "99999"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --port: must be 0 to 65535 (0: any free), got 99999" in err
    assert "Traceback" not in err


# embed's first errors


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--chunk", "0", "argument --chunk: must be at least 1, got 0"),
        ("--concurrency", "-2", "argument --concurrency: must be at least 1, got -2"),
        ("--rate-limit", "lots", "argument --rate-limit: not a whole number: 'lots'"),
    ],
)
def test_embed_counts_must_be_positive(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["embed", "in.txt", "--out", "out.npy", option, value])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_embed_names_a_missing_input_file_before_any_request(
    local_server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.txt"
    argv = ["embed", str(missing), "--out", str(tmp_path / "v.npy")]
    code = cli_main([*argv, "--inference-id", "x", "--es-url", local_server.url])
    assert code == 1
    assert capsys.readouterr().err == (
        f"es-inference: cannot read the input file {str(missing)!r}: "
        "No such file or directory\n"
    )
    assert local_server.requests == []


def test_embed_names_a_missing_output_folder_before_any_request(
    local_server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one\n")
    out = tmp_path / "nowhere" / "v.npy"
    argv = ["embed", str(corpus), "--out", str(out), "--inference-id", "x"]
    assert cli_main([*argv, "--es-url", local_server.url]) == 1
    assert capsys.readouterr().err == (
        f"es-inference: cannot write {str(out)!r}: the folder "
        f"{str(out.parent)!r} does not exist\n"
    )
    assert local_server.requests == []


def test_embed_without_an_endpoint_names_both_options(
    local_server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one\n")
    argv = ["embed", str(corpus), "--out", str(tmp_path / "v.npy")]
    assert cli_main([*argv, "--es-url", local_server.url]) == 2
    assert capsys.readouterr().err == (
        "es-inference: embed needs --inference-id of an existing endpoint, or "
        "--model to create one\n"
    )
    assert local_server.requests == []


def test_demo_without_its_extras_names_the_missing_package(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "langchain_core.vectorstores", None)
    assert cli_main(["demo"]) == 1
    assert capsys.readouterr().err == (
        "es-inference: the demo needs 'langchain_core', which is not installed: "
        "pip install 'es-inference[all]'\n"
    )


def test_version_names_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli_main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"es-inference {es_inference.__version__}\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answers", [[], ["AKIDPASTED", ""]], ids=["eof", "blank"])
def test_rotate_keys_without_typed_keys_changes_nothing(
    answers: list[str],
    local_server: LocalServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setattr("sys.stdin", _Terminal())
    typed = iter(answers)

    def prompt(question: str) -> str:
        try:
            return next(typed)
        except StopIteration:
            raise EOFError from None

    monkeypatch.setattr("getpass.getpass", prompt)
    code = cli_main(["rotate-keys", "rotating", "--es-url", local_server.url])
    assert code == 2
    err = capsys.readouterr().err
    assert err == "es-inference: no new AWS keys given; nothing was changed\n"
    assert local_server.requests == []


def test_ctrl_c_while_the_command_line_is_read_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_parser", interrupted)
    assert cli_main(["serve"]) == 130
    assert capsys.readouterr().err == "es-inference: interrupted\n"


def test_refused_credentials_name_the_variables_that_carry_them(
    local_server: LocalServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name in ("ELASTICSEARCH_API_KEY", "ELASTICSEARCH_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("one\n")
    argv = ["embed", str(corpus), "--out", str(tmp_path / "v.npy")]
    assert cli_main([*argv, "--inference-id", "x", "--es-url", local_server.url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("es-inference: [401] security_exception: missing ")
    assert err.endswith(
        "; the command reads Elasticsearch credentials from ELASTICSEARCH_API_KEY, "
        "or ELASTICSEARCH_USERNAME and ELASTICSEARCH_PASSWORD\n"
    )
    assert local_server.count("GET") == 1


def test_embed_names_a_line_that_is_not_utf8_before_any_request(
    local_server: LocalServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = tmp_path / "latin1.txt"
    corpus.write_bytes("ok\r\ncaf\u00e9 cr\u00e8me\n".encode("latin-1"))
    argv = ["embed", str(corpus), "--out", str(tmp_path / "v.npy"), "--model", TITAN]
    assert cli_main([*argv, "--es-url", local_server.url]) == 1
    assert capsys.readouterr().err == (
        f"es-inference: {corpus}:2: not UTF-8 text (byte 4 of the line); save the "
        "file as UTF-8\n"
    )
    assert local_server.requests == []


def test_embed_reads_windows_line_ends_and_a_byte_order_mark(tmp_path: Path) -> None:
    corpus = tmp_path / "windows.txt"
    corpus.write_bytes(b"\xef\xbb\xbffirst\r\nsecond\r\n")
    assert list(read_texts(corpus)) == ["first", "second"]
