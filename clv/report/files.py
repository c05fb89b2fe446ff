"""Report folders written whole or not at all: built in a hidden staging folder beside the target, then swapped
in, so a failed or interrupted write leaves the previous folder as it was."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["staged_folder"]


@contextmanager
def staged_folder(target: Path, keep: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield an empty staging folder; when the block ends without an error it replaces `target`, carrying over
    the entries of the old target named in `keep` (folders other commands write, e.g. `evaluation`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; reports are as readable as their folder
    try:
        yield staging
        for name in keep:
            if (target / name).exists() and not (staging / name).exists():
                (target / name).rename(staging / name)
        _swap(staging, target)
    except BaseException:
        for name in keep:  # put carried-over entries back before the staging folder goes
            if (staging / name).exists() and target.exists() and not (target / name).exists():
                (staging / name).rename(target / name)
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap(staging: Path, target: Path) -> None:
    """Put `staging` in the place of `target`; if that fails (or Ctrl-C lands between the two renames), the old
    target goes back."""
    old = target.with_name(f".{target.name}.old")
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        if old.exists() and not target.exists():
            old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
