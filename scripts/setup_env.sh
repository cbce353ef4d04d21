#!/usr/bin/env bash
# Create (or reuse) the course's virtual environment in .venv and install the course into it.
#
#   bash scripts/setup_env.sh            # idempotent; safe to run again
#   PYTHON=python3.12 bash scripts/setup_env.sh
#   TORCH_SPEC="torch torchvision" bash scripts/setup_env.sh   # another PyTorch build
#
# PyTorch is pinned because torchvision wheels only import beside the torch build they were
# made for. The stamp file records what was installed, so a second run takes a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1 torchvision==0.29.1}"
STAMP="$VENV/.course-installed"
WANT="$(cat pyproject.toml; echo "$TORCH_SPEC")"

if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "==> $VENV is up to date"
else
    echo "==> installing $TORCH_SPEC and the course (editable, with dev tools)"
    # shellcheck disable=SC2086
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q $TORCH_SPEC -e ".[dev]"
    printf '%s' "$WANT" > "$STAMP"
fi
# The environment's Jupyter kernel, under the name and display name the course notebooks store
# ("python3", "Python 3 (ipykernel)"): another display name makes JupyterLab rewrite the notebook's
# metadata on opening, so every notebook would open as modified.
"$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ipykernel)" >/dev/null
