"""Atomic file writes shared by the trainer, the data preparation, the analysis tools and hub/."""
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

__all__ = ['apply_default_permissions', 'atomic_path']


def apply_default_permissions(path: Union[str, Path]) -> None:
    """Give a file or folder the permissions the process umask gives new ones (0644 or 0755 under umask 022).

    ``tempfile.mkstemp`` and ``mkdtemp`` create private (0600 or 0700) entries, which would stay unreadable to
    other users once they are moved into place.
    """
    umask = os.umask(0)
    os.umask(umask)
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


@contextmanager
def atomic_path(path: Union[str, Path]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``, and move it onto ``path`` when the block ends without error.

    Readers see the old file or the complete new one, never a partial write. If the block raises, the temporary
    file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        apply_default_permissions(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
