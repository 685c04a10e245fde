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
# pip's cache stays on (never --no-cache-dir): a second run, or CI that keeps ~/.cache/pip
# (or PIP_CACHE_DIR) between runs, installs from cached wheels instead of downloading them.
# No version self-check on each call (the first line upgrades pip anyway).
PIP=(.venv/bin/python -m pip --disable-pip-version-check install --quiet)
"${PIP[@]}" --upgrade pip
"${PIP[@]}" -e '.[dev]'
echo "== ruff";  .venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy";  .venv/bin/mypy
if [ -f mkdocs.yml ]; then
  # --strict fails the build on any warning; --quiet would hide the very warnings it counts
  # (mkdocs then exits 0), so keep the log and only drop its INFO lines. pipefail (above)
  # makes the pipeline fail when mkdocs does.
  echo "== docs"
  .venv/bin/mkdocs build --strict --site-dir "$(mktemp -d)" 2>&1 | { grep -v '^INFO ' || true; }
fi
# Two worker processes (pytest-xdist; PYTEST_WORKERS to change): the suite is mostly real
# sockets and subprocesses waiting on I/O, so two workers halve it even on two cores.
# tests/conftest.py schedules them: single tests, except a few whole modules sent first.
echo "== pytest"; .venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" "$@"
