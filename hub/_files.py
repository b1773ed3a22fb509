"""File helpers shared by the hub tools."""
import os
from pathlib import Path
from typing import Union

__all__ = ['apply_default_permissions']


def apply_default_permissions(path: Union[str, Path]) -> None:
    """Give a file or folder the permissions the process umask gives new files (0644 or 0755 under umask 022).

    ``tempfile.mkstemp`` and ``mkdtemp`` create private (0600 or 0700) entries, which would make published
    folders and cached blobs unreadable to other users once they are moved into place.
    """
    umask = os.umask(0)
    os.umask(umask)
    path = Path(path)
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)
