"""orchestrator.untrusted, the one door for what agents wrote: real files, FIFOs, symlinks and sparse files."""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path

import pytest

from orchestrator.untrusted.files import RefusedPath, is_regular_file, read_bytes, read_file, write_bytes
from orchestrator.untrusted.text import clean_text, one_line
from orchestrator.untrusted.tree import clear_hazards


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "work" / "src").mkdir(parents=True)
    (tmp_path / "work" / "src" / "a.txt").write_text("alpha\n")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_text("secret\n")
    return tmp_path / "work"


def test_reads_refuse_symlinks_anywhere_on_the_way(root):
    (root / "link.txt").symlink_to(root.parent / "outside" / "secret.txt")
    (root / "dir").symlink_to(root.parent / "outside")
    assert read_bytes(root, "src/a.txt", 100) == b"alpha\n"
    for path in ("link.txt", "dir/secret.txt", "../outside/secret.txt", "/etc/passwd"):
        with pytest.raises(RefusedPath):
            read_bytes(root, path, 100)
    with pytest.raises(RefusedPath, match="symlink"):
        read_file(root / "link.txt", 100)
    assert not is_regular_file(root, "link.txt") and is_regular_file(root, "src/a.txt")


def test_a_fifo_is_refused_without_blocking(root):
    os.mkfifo(root / "handoff.json")
    done = []
    reader = threading.Thread(target=lambda: done.append(pytest.raises(RefusedPath, read_file, root / "handoff.json", 10)))
    reader.start()
    reader.join(5)
    assert done, "reading a FIFO blocked"


def test_reads_are_bounded_even_for_a_huge_sparse_file(root):
    with open(root / "big.bin", "wb") as big:
        big.truncate(3 * 1024 ** 3)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(RefusedPath, match="more than"):
        read_bytes(root, "big.bin", 1_000_000)
    assert len(read_bytes(root, "big.bin", 400_000, whole=False)) == 400_000
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000  # KiB: nothing near 3 GB read


def test_writes_never_go_through_a_symlink_or_into_a_fifo(root):
    (root / "keys").symlink_to(root.parent / "outside")
    (root / "note.txt").symlink_to(root.parent / "outside" / "secret.txt")
    os.mkfifo(root / "pipe")
    for path in ("keys/new.txt", "note.txt", "pipe"):
        with pytest.raises(RefusedPath):
            write_bytes(root, path, b"pwned")
    assert sorted(p.name for p in (root.parent / "outside").iterdir()) == ["secret.txt"]
    assert (root.parent / "outside" / "secret.txt").read_text() == "secret\n"
    write_bytes(root, "deep/new/file.txt", b"fine")
    assert (root / "deep" / "new" / "file.txt").read_bytes() == b"fine"


def test_clear_hazards_removes_nested_repositories_special_files_and_links_without_following(root):
    (root / ".git").write_text("gitdir: /somewhere\n")  # the top's own pointer stays
    (root / "sub" / ".git" / "hooks").mkdir(parents=True)
    (root / "sub" / ".git" / "config").write_text("[filter \"x\"]\n\tclean = sh -c 'env > /tmp/leak'\n")
    (root / "other").mkdir()
    (root / "other" / ".git").write_text("gitdir: /tmp/elsewhere\n")
    os.mkfifo(root / "src" / "fifo")
    (root / "src" / ".gitattributes").symlink_to("/etc/passwd")
    (root / "keys").symlink_to(root.parent / "outside")
    (root / "big.bin").write_bytes(b"x" * 2000)
    scan = clear_hazards(root, size_bound=1000)
    assert not (root / "sub" / ".git").exists() and not (root / "other" / ".git").exists()
    assert not (root / "src" / "fifo").exists() and not (root / "src" / ".gitattributes").is_symlink()
    assert (root / ".git").is_file() and (root / "keys").is_symlink(), "symlinks stay unless asked"
    assert scan.oversized == {"big.bin": 2000}
    assert {path for path, _why in scan.removed} == {"sub/.git", "other/.git", "src/fifo", "src/.gitattributes"}
    clear_hazards(root, symlinks=True)
    assert not (root / "keys").is_symlink() and (root.parent / "outside" / "secret.txt").exists()


def test_clean_text_drops_controls_and_escape_sequences():
    hostile = ("a\x00b\x1b]52;c;ZXZpbA==\x07c\x1b]0;title\x1b\\d\x1b[2Je\x1b]8;;http://x\x07link\x1b]8;;\x07"
               "f\x9b2Jg\rh\u202eok\u200f\ttab\n")
    assert clean_text(hostile) == "abcdelinkfg\nhok\ttab\n"
    assert clean_text("\x1b]52;c;QQ==\x9c tail") == " tail"
    assert one_line("  title\n\nwith\x00 lines  ") == "title with lines"
