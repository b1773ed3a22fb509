"""Add a published folder to a local Hugging Face cache, as ``hf_hub_download`` would have stored it.

The cache layout is huggingface_hub's: ``models--<org>--<name>/blobs/<etag>`` contains each file once,
``snapshots/<commit>/<path>`` links to the blobs, and ``refs/<revision>`` contains the commit id. With
``HF_HUB_OFFLINE=1`` and ``HF_HUB_CACHE`` pointing at the cache, ``timm.create_model('hf-hub:<org>/<name>',
pretrained=True)`` then reads the folder without any network access.

The commit id is the SHA-1 of the file names and contents, because the folder was never committed to a Hub
repo. Blob names follow the Hub's etags: the SHA-256 of ``.safetensors`` files, which the Hub stores with
Git LFS, and the Git blob SHA-1 of the other files.
"""
import argparse
import hashlib
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence, Union

from timm_deluge._files import atomic_path

__all__ = ['add_to_hf_cache', 'main']

_CHUNK_BYTES = 1 << 20


def _file_etag(path: Path) -> str:
    if path.suffix == '.safetensors':
        digest = hashlib.sha256()
    else:
        digest = hashlib.sha1()
        digest.update(f'blob {path.stat().st_size}\0'.encode())
    with path.open('rb') as f:
        for chunk in iter(lambda: f.read(_CHUNK_BYTES), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomic(target: Path, write) -> None:
    with atomic_path(target) as tmp:
        write(tmp)


def add_to_hf_cache(
        folder: Union[str, Path],
        repo_id: str,
        cache_dir: Optional[Union[str, Path]] = None,
        revision: str = 'main',
) -> Path:
    """Copy a folder into a Hugging Face cache as one snapshot of a model repo, and return the snapshot path.

    Args:
        folder: Folder of the repo's files, e.g. one written by ``python -m hub.publish``.
        repo_id: Hub repo id, ``<org>/<name>``.
        cache_dir: Cache root (default: huggingface_hub's ``HF_HUB_CACHE``).
        revision: Branch name that ``refs/`` maps to the snapshot.

    Raises:
        FileNotFoundError: If the folder does not exist or contains no files.
        ValueError: If ``repo_id`` is not of the form ``<org>/<name>``.
    """
    folder = Path(folder)
    files = sorted(p for p in folder.rglob('*') if p.is_file()) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"Folder '{folder}' does not exist or contains no files to cache.")
    if repo_id.count('/') != 1 or not all(repo_id.split('/')):
        raise ValueError(f"repo_id={repo_id!r} is invalid: use '<org>/<name>'.")
    if cache_dir is None:
        from huggingface_hub.constants import HF_HUB_CACHE
        cache_dir = HF_HUB_CACHE

    repo_dir = Path(cache_dir) / f"models--{repo_id.replace('/', '--')}"
    etags = {f.relative_to(folder).as_posix(): _file_etag(f) for f in files}
    commit = hashlib.sha1(''.join(f'{name}\0{etag}\n' for name, etag in etags.items()).encode()).hexdigest()
    snapshot = repo_dir / 'snapshots' / commit
    (repo_dir / 'blobs').mkdir(parents=True, exist_ok=True)
    (repo_dir / 'refs').mkdir(parents=True, exist_ok=True)

    for name, etag in etags.items():
        blob = repo_dir / 'blobs' / etag
        if not blob.exists():
            _write_atomic(blob, lambda tmp, src=folder / name: shutil.copyfile(src, tmp))
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            link.symlink_to(os.path.relpath(blob, link.parent))
        except OSError:
            # Filesystems without symlinks get a copy, as huggingface_hub itself does on them.
            shutil.copyfile(blob, link)

    _write_atomic(repo_dir / 'refs' / revision, lambda tmp: tmp.write_text(commit))
    return snapshot


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m hub.local_cache',
        description='Add a published folder to a local Hugging Face cache, for offline hf-hub: loading.')
    parser.add_argument('folder', type=Path, help='Folder written by python -m hub.publish.')
    parser.add_argument('--repo-id', required=True, help='Hub repo id of the folder, <org>/<name>.')
    parser.add_argument('--cache-dir', type=Path, help='Cache root (default: HF_HUB_CACHE).')
    parser.add_argument('--revision', default='main', help='Branch name (default: %(default)s).')
    args = parser.parse_args(argv)
    snapshot = add_to_hf_cache(args.folder, args.repo_id, cache_dir=args.cache_dir, revision=args.revision)
    print(f'Cached {args.repo_id} at {snapshot}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
