"""Running Cadre's processes as a plain (non-root) user from a root test: the attacks that matter differ
between a root-run and a user-run Cadre, and both must fail.

The Python that runs the tests may live in a home only root can enter (`/root/.pyenv`): the processes
run in a mount namespace of their own where that home is replaced by an empty, enterable folder with
just the interpreter bound back in, then drop to the user with `setpriv`. Needs root, `unshare` and
`setpriv` (util-linux).
"""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

PLAIN_UID = 65534  # nobody: a real passwd entry, no home, no privilege
PREPARE = """set -e
hold=$(mktemp -d /tmp/.cadre-python-XXXXXX)
i=0
for path in $PYTHON_HOMES; do mkdir -p "$hold/$i"; mount --bind "$path" "$hold/$i"; i=$((i+1)); done
for folder in $SEALED; do mount -t tmpfs -o mode=0755 tmpfs "$folder"; done
i=0
for path in $PYTHON_HOMES; do mkdir -p "$path"; mount --move "$hold/$i" "$path"; i=$((i+1)); done
exec setpriv --reuid=$PLAIN_UID --regid=$PLAIN_UID --clear-groups -- "$@"
"""


def available() -> str | None:
    """None when plain-user runs can happen here, else why not (for a skip)."""
    if os.geteuid() != 0:
        return "switching to a plain user needs root"
    missing = [p for p in ("unshare", "setpriv", "mount") if shutil.which(p) is None]
    return f"{', '.join(missing)} not installed" if missing else None


def _sealed_ancestor(path: Path) -> Path | None:
    """The highest folder above `path` that others may not enter (e.g. /root), or None."""
    for folder in reversed(path.parents):
        if folder != Path("/") and not os.stat(folder).st_mode & stat.S_IXOTH:
            return folder
    return None


def prefix() -> list[str]:
    """The argv prefix that runs a command as the plain user, this Python still usable."""
    homes = [Path(p) for p in dict.fromkeys((sys.base_prefix, sys.prefix))]
    sealed = sorted({s for h in homes if (s := _sealed_ancestor(h)) is not None})
    script = PREPARE.replace("$PYTHON_HOMES", " ".join(str(h) for h in homes if _sealed_ancestor(h))) \
                    .replace("$SEALED", " ".join(str(s) for s in sealed)).replace("$PLAIN_UID", str(PLAIN_UID))
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"]


def shared_folder(prefix_name: str) -> Path:
    """A folder under /tmp the plain user can enter (the tests' own temporary folders are root's only)."""
    folder = Path(tempfile.mkdtemp(prefix=prefix_name, dir="/tmp"))
    folder.chmod(0o755)
    return folder


def give(path: Path) -> None:
    """Make `path` (and all below it) the plain user's."""
    for top, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            os.lchown(os.path.join(top, name), PLAIN_UID, PLAIN_UID)
    os.lchown(path, PLAIN_UID, PLAIN_UID)
