#!/usr/bin/env bash
# One entry point for a fresh machine: sets up .venv on first use, then runs the
# demo, the tests, the benchmark or the checks.
#
#   ./run.sh demo     embed the Python reference offline and answer questions
#   ./run.sh test     the whole test suite (what CI runs)
#   ./run.sh bench    the performance benchmark
#   ./run.sh check    formatter, linter and mypy
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed"
  local want
  want=$(cat pyproject.toml | sha256sum | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e ".[test]"
    echo "$want" > "$stamp"
  fi
}

cmd=${1:-help}
[ $# -gt 0 ] && shift
case "$cmd" in
  demo)
    setup
    exec "$VENV/bin/es-inference" demo "$@"
    ;;
  test)
    setup
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  bench)
    setup
    exec "$VENV/bin/python" -m benchmarks "$@"
    ;;
  check)
    setup
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/ruff" check .
    "$VENV/bin/mypy"
    ;;
  *)
    sed -n '2,9p' "$0"
    exit 2
    ;;
esac
