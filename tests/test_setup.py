"""The set-up guards: run from the repo root, as a user's `python -m` / `python -c` / REPL would, the
repo root is on sys.path, so no folder there may be importable as a package that hides an installed
distribution (a top-level `kernels/` once hid the `kernels` package transformers 5 imports, issue 13)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_in_root(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONSAFEPATH", "PYTHONPATH")}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_radixgen_is_the_only_package_in_the_repo_root():
    packages = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").exists())
    assert packages == ["radixgen"], packages


def test_transformers_kernels_hub_imports_from_the_repo_root():
    done = run_in_root("-c", "import radixgen, transformers.integrations.hub_kernels, kernels; print(kernels.__file__)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert not done.stdout.strip().startswith(str(ROOT / "kernels")), done.stdout


@pytest.mark.slow
def test_generate_from_the_repo_root():
    done = run_in_root("-m", "radixgen", "generate", "Hi", "--max-new-tokens", "4")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), done.stderr[-2000:]
