"""`make run` leaves `git status` clean: Reflex finds every line it wants in our .gitignore."""

import shutil
from pathlib import Path

from reflex.utils.frontend_skeleton import initialize_gitignore

ROOT = Path(__file__).resolve().parents[1]


def test_reflex_leaves_our_gitignore_as_it_is(tmp_path):
    copy = tmp_path / ".gitignore"
    shutil.copy(ROOT / ".gitignore", copy)
    initialize_gitignore(gitignore_file=copy)
    assert copy.read_text() == (ROOT / ".gitignore").read_text()
