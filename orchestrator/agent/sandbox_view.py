"""What a sandboxed command may see of the host: an allowlist, never the host's `/` bound whole.

- the system folders programs need (`/usr`, `/bin`, `/sbin`, `/lib*`, and `/etc` without its secrets:
  every entry the world may not read, the shadow and sudoers files, systemd units, Cadre's own);
- the tools and interpreters the worker's `PATH` names: each PATH folder that is not secret, the
  virtualenv it belongs to and the interpreter home that virtualenv points at (`pyvenv.cfg`'s `home`),
  a version manager's root for its `shims` folder (pyenv, rbenv, nodenv, asdf), and the prefix of every
  interpreter a PATH script's `#!` line or symlink leads to (pipx, uv tools, `~/.local/bin`);
- never: `/home`, `/root`, `/run`, `/srv`, `/var` (but a private `/var/tmp`), `/mnt`, `/media`, Cadre's
  working directory, its `.env` and its data directory; `/sys` only as the CPU list programs size their
  pools by. Paths hidden by the operator (`CADRE_SANDBOX_HIDDEN`) are hidden even inside what is shown.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/nix/store")
# World-readable files and folders of /etc that still hold secrets on common hosts.
ETC_SECRETS = ("shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "ssh", "ssl/private",
               "systemd", "credstore", "credstore.encrypted", "cadre", "security/opasswd", "redis", "mysql",
               "postgresql", "rabbitmq", "docker", "kubernetes", "NetworkManager/system-connections",
               "ppp/chap-secrets", "ppp/pap-secrets", "ipsec.secrets", "krb5.keytab", "letsencrypt", "netrc",
               "environment", "passwd-", "group-")
# Folder names that hold credentials: a PATH entry below one of them is never shown.
SECRET_FOLDER_NAMES = frozenset({".ssh", ".aws", ".gnupg", ".docker", ".kube", ".azure", ".password-store",
                                 ".netrc", "secrets", ".secrets", "credentials"})
SHIM_FOLDER = "shims"
SHEBANG_BYTES = 256
MAX_PATH_ENTRIES_READ = 400


@dataclass(frozen=True)
class HostView:
    """Host paths a sandbox shows read-only (`shown`), the top-level symlinks it recreates (`links`:
    `/bin -> usr/bin` on merged-/usr systems), and what it masks inside them (`masked_files`,
    `masked_folders`: replaced by an empty file or folder)."""

    shown: tuple[Path, ...]
    links: tuple[tuple[str, str], ...]
    masked_files: tuple[Path, ...]
    masked_folders: tuple[Path, ...]


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


@lru_cache(maxsize=1)
def etc_secrets(etc: str = "/etc") -> tuple[tuple[Path, ...], tuple[Path, ...]]:
    """(files, folders) under /etc to mask: the known secret places, and every entry the world cannot read
    (a root-owned `0600` file is readable inside a root-run sandbox otherwise: its uid maps to root)."""
    files, folders = [], []
    for name in ETC_SECRETS:
        path = Path(etc) / name
        if path.is_symlink() or not path.exists():
            continue
        (folders if path.is_dir() else files).append(path)
    for top, dirnames, filenames in os.walk(etc, followlinks=False):
        here = Path(top)
        if any(_is_within(here, f) for f in folders):
            dirnames[:] = []
            continue
        for name in list(dirnames):
            info = os.lstat(here / name)
            if stat.S_ISDIR(info.st_mode) and info.st_mode & 0o005 != 0o005:
                folders.append(here / name)
                dirnames.remove(name)
        for name in filenames:
            try:
                info = os.lstat(here / name)
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode) and not info.st_mode & 0o004 and here / name not in files:
                files.append(here / name)
    return tuple(dict.fromkeys(files)), outermost(folders)


@lru_cache(maxsize=1)
def system_view() -> HostView:
    """The system folders, as the host has them (real folders shown, merged-/usr symlinks recreated)."""
    shown, links = [], []
    for folder in SYSTEM_FOLDERS:
        path = Path(folder)
        if path.is_symlink():
            links.append((os.readlink(path), folder))
        elif path.is_dir():
            shown.append(path)
    cpu = Path("/sys/devices/system/cpu")
    if cpu.is_dir():
        shown.append(cpu)
    files, folders = etc_secrets()
    return HostView(tuple(shown), tuple(links), files, folders)


def _system(path: Path) -> bool:
    return any(_is_within(path, Path(f)) for f in SYSTEM_FOLDERS if not Path(f).is_symlink())


def _installation_of(executable: Path) -> list[Path]:
    """The folders an executable needs besides its own: for one in a `bin` folder whose parent is a
    virtualenv (`pyvenv.cfg`) or an interpreter's installation (a `lib/pythonX.Y`, `lib/node_modules` or
    `lib/ruby` beside it), that parent, and the interpreter home a virtualenv's `pyvenv.cfg` names. Any
    other `bin` folder's parent (`~/.cargo`, `~`) is not an installation to show: it may hold credentials."""
    folder = executable.parent
    root = folder.parent
    if folder.name != "bin" or root == Path("/"):
        return []
    config = root / "pyvenv.cfg"
    if config.is_file():
        found = [root]
        for line in config.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip().startswith("/"):
                home = Path(value.strip()).resolve()
                found += [home, *_installation_of(home / "python")]
        return found
    lib = root / "lib"
    if lib.is_dir() and (any(lib.glob("python3*")) or (lib / "node_modules").is_dir() or (lib / "ruby").is_dir()):
        return [root]
    return []


def _interpreter_of(path: Path) -> Path | None:
    """The absolute interpreter of a `#!` script (None for `/usr/bin/env ...` and non-scripts)."""
    try:
        with open(path, "rb") as file:
            head = file.read(SHEBANG_BYTES)
    except OSError:
        return None
    if not head.startswith(b"#!"):
        return None
    words = head[2:].split(b"\n", 1)[0].split()
    if not words or not words[0].startswith(b"/") or words[0].endswith(b"/env"):
        return None
    return Path(os.fsdecode(words[0]))


def _secret(path: Path, protected: tuple[Path, ...]) -> bool:
    """A folder never shown: `/`, an ancestor of something hidden (a home, Cadre's working directory or data
    directory), or a folder below a credentials folder."""
    return path == Path("/") or any(_is_within(p, path) for p in protected) \
        or any(part in SECRET_FOLDER_NAMES for part in path.parts)


@lru_cache(maxsize=8)
def tool_paths(path_variable: str, protected: tuple[Path, ...]) -> tuple[Path, ...]:
    """Folders to show read-only so that the programs `path_variable` (a PATH) names run as they do
    outside: see the module docstring. `protected` paths, and their ancestors, are never shown."""
    shown: list[Path] = []

    def show(path: Path) -> None:
        path = path.resolve()
        if path.is_dir() and not _system(path) and not _secret(path, protected):
            shown.append(path)

    for entry in path_variable.split(os.pathsep):
        if not entry.startswith("/") or not Path(entry).is_dir():
            continue
        folder = Path(entry).resolve()
        if _system(folder) or _secret(folder, protected):
            continue
        show(folder)
        for path in _installation_of(folder / "x"):
            show(path)
        if folder.name == SHIM_FOLDER:  # pyenv, rbenv, nodenv, asdf: the shims run the manager's own root
            show(folder.parent)
        for child in sorted(folder.iterdir())[:MAX_PATH_ENTRIES_READ]:
            target = child.resolve() if child.is_symlink() else _interpreter_of(child)
            if target is not None and target.exists() and not _system(target):
                show(target.parent)
                for path in _installation_of(target):
                    show(path)
    for prefix in dict.fromkeys((sys.base_prefix, sys.prefix)):  # the Python that runs Cadre (and the launcher)
        show(Path(prefix))
    return outermost(shown)


def outermost(paths: list[Path]) -> tuple[Path, ...]:
    """`paths` without duplicates and without those inside another one of them, in their first order."""
    unique = list(dict.fromkeys(paths))
    return tuple(p for p in unique if not any(o != p and _is_within(p, o) for o in unique))


def masks_inside(shown: tuple[Path, ...], hidden: tuple[Path, ...]) -> tuple[list[Path], list[Path]]:
    """(files, folders) among `hidden` that lie inside a shown path, to mask after showing it (a `.env`
    beside a virtualenv that is shown, a data directory inside a shown tool folder)."""
    files, folders = [], []
    for path in hidden:
        if any(_is_within(path, s) and path != s for s in shown) and (path.exists() or path.is_symlink()):
            (folders if path.is_dir() and not path.is_symlink() else files).append(path)
    return files, folders
