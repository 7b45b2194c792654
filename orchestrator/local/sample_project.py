"""The sample project for `cadre demo` and `cadre sample-repo`: a tiny library whose tests fail.

Two bugs in two modules, so two workers can fix them in parallel without touching the same file.
Its tests use only the standard library (`python -m unittest`), so they run on any machine.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

CHECK_COMMAND = "python -m unittest discover -s tests -q"
GOAL = "Make the test suite pass: fix mathlib.adding.add and implement mathlib.scaling.scale."

FILES = {
    "README.md": "# mathlib\n\nA small library. Run the tests with `python -m unittest discover -s tests`.\n",
    "mathlib/__init__.py": "",
    "mathlib/adding.py": 'def add(a: float, b: float) -> float:\n    """The sum of a and b."""\n    return a - b\n',
    "mathlib/scaling.py": 'def scale(values: list[float], factor: float) -> list[float]:\n'
                          '    """Every value multiplied by factor."""\n    return []\n',
    "tests/__init__.py": "",
    "tests/test_adding.py": "import unittest\n\nfrom mathlib.adding import add\n\n\n"
                            "class AddTest(unittest.TestCase):\n    def test_add(self):\n"
                            "        self.assertEqual(add(2, 3), 5)\n",
    "tests/test_scaling.py": "import unittest\n\nfrom mathlib.scaling import scale\n\n\n"
                             "class ScaleTest(unittest.TestCase):\n    def test_scale(self):\n"
                             "        self.assertEqual(scale([1, 2], 3), [3, 6])\n",
}
# What the demo model's workers write: the fixed files.
FIXES = {
    "mathlib/adding.py": 'def add(a: float, b: float) -> float:\n    """The sum of a and b."""\n    return a + b\n',
    "mathlib/scaling.py": 'def scale(values: list[float], factor: float) -> list[float]:\n'
                          '    """Every value multiplied by factor."""\n    return [v * factor for v in values]\n',
}
IDENTITY = ["-c", "user.name=Cadre", "-c", "user.email=cadre@localhost"]


def create_sample_repo(bare: Path, branch: str = "main") -> Path:
    """Create `bare` as a bare git repository whose `branch` holds the sample project; returns it.

    Refuses (FileExistsError) to touch an existing path.
    """
    if bare.exists():
        raise FileExistsError(f"{bare} already exists")
    subprocess.run(["git", "init", "-q", "--bare", "-b", branch, str(bare)], check=True)
    with tempfile.TemporaryDirectory(prefix="cadre-sample-") as seed:
        subprocess.run(["git", "init", "-q", "-b", branch, seed], check=True)
        for name, content in FILES.items():
            (Path(seed) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(seed) / name).write_text(content, encoding="utf-8")
        subprocess.run(["git", "-C", seed, "add", "-A"], check=True)
        subprocess.run(["git", *IDENTITY, "-C", seed, "commit", "-q", "-m", "mathlib with failing tests"], check=True)
        subprocess.run(["git", "-C", seed, "push", "-q", str(bare), f"{branch}:{branch}"], check=True)
    return bare


def suite_passes(bare: Path, branch: str = "main") -> tuple[bool, str]:
    """Run the sample's test suite on `branch` of `bare` in a fresh clone: (passed, output)."""
    with tempfile.TemporaryDirectory(prefix="cadre-verify-") as clone:
        subprocess.run(["git", "clone", "-q", "-b", branch, str(bare), clone], check=True)
        done = subprocess.run(CHECK_COMMAND, shell=True, cwd=clone, capture_output=True, text=True, timeout=120)
        return done.returncode == 0, done.stdout + done.stderr
