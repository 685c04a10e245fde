#!/usr/bin/env bash
# The whole check, from a fresh clone on a machine with only Python and pip:
# create .venv, install the project with every extra it tests, then lint, types, docs, tests.
# Extra arguments go to pytest (e.g. `bash scripts/check.sh -k engine`).
set -euo pipefail
export NO_MKDOCS_2_WARNING=1
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev]'
echo "== ruff";  .venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy";  .venv/bin/mypy
if [ -f mkdocs.yml ]; then
  echo "== docs"; .venv/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)"
fi
echo "== pytest"; .venv/bin/python -m pytest "$@"
