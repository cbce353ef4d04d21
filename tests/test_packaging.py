"""The two ways to install the course (pip, conda) name the same packages; importing stays light.

The import *time* is measured by benchmarks/import_time.py (a benchmark, not a timed test)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Names that differ between PyPI and conda-forge.
CONDA_NAME = {"torch": "pytorch"}


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~;\[ ]", spec, maxsplit=1)[0].strip().lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _conda_packages() -> set[str]:
    names = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        match = re.match(r"^\s{2}- ([A-Za-z0-9_.-]+)", line)
        if match:
            names.add(_requirement_name(match.group(1)))
    return names


def test_environment_yml_names_every_runtime_dependency():
    conda = _conda_packages()
    missing = [
        name
        for name in map(_requirement_name, _pyproject()["project"]["dependencies"])
        if CONDA_NAME.get(name, name) not in conda
    ]
    assert not missing, f"environment.yml lacks runtime dependencies of pyproject.toml: {missing}"


def test_environment_yml_names_every_dev_dependency():
    conda = _conda_packages()
    dev = _pyproject()["project"]["optional-dependencies"]["dev"]
    missing = [n for n in map(_requirement_name, dev) if CONDA_NAME.get(n, n) not in conda]
    assert not missing, f"environment.yml lacks dev dependencies of pyproject.toml: {missing}"


def test_environment_yml_installs_the_course_itself():
    assert "- -e ." in (ROOT / "environment.yml").read_text()


def test_import_course_lib_loads_no_heavy_libraries():
    code = (
        "import sys, course_lib, course_lib.conv, course_lib.pooling, course_lib.norm, "
        "course_lib.resnet, course_lib.optim, course_lib.train\n"
        "heavy = ['matplotlib', 'torchvision', 'sklearn', 'skimage', 'mlxtend']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"course_lib imported heavy modules at load: {out.stdout}"
