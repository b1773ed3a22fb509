"""Run one of timm's scripts (train.py, validate.py, benchmark.py, inference.py) with the DelugeNets registered.

Usage::

    python -m timm_deluge.launch SCRIPT [ARGS...]
    torchrun --nproc_per_node 2 -m timm_deluge.launch train.py --device cpu ...

SCRIPT is a path to one of timm's scripts, or a bare script name that is looked up in ``$TIMM_SCRIPTS_DIR``
(a checkout of https://github.com/huggingface/pytorch-image-models). ARGS go to the script unchanged.

Import path: the script runs with ``runpy.run_path``, which does not put the script's folder on ``sys.path``, and
``timm`` and ``timm_deluge`` are imported before the script starts. The script's ``import timm`` therefore gets the
installed timm even when a ``timm/`` source folder sits beside the script. Python puts the current folder first on
``sys.path`` for ``-m``, so the launcher raises an error when the imported timm comes from the script's folder, which
happens only when the command runs from inside that checkout.

NOTE: when that checkout's timm is older than the one timm_deluge needs, importing timm_deluge fails with an
ImportError before the launcher's check runs. Run the command from another folder.

DDP on CPU: timm's train.py wraps the model with ``DistributedDataParallel(model, device_ids=[device])`` on every
device, and PyTorch rejects ``device_ids`` for a module whose parameters are on the CPU. The launcher drops
``device_ids`` and ``output_device`` for such modules, which is what PyTorch expects for CPU (gloo) training.
"""
import functools
import os
import runpy
import sys
from pathlib import Path
from typing import List, Optional, Sequence

import torch
import torch.nn as nn

import timm
import timm_deluge

__all__ = ['TIMM_SCRIPTS', 'resolve_script', 'patch_ddp_for_cpu', 'run_script', 'main']

TIMM_SCRIPTS = ('train.py', 'validate.py', 'benchmark.py', 'inference.py')

_USAGE = 'usage: python -m timm_deluge.launch {' + ','.join(TIMM_SCRIPTS) + '} [ARGS...]'


def resolve_script(script: str) -> Path:
    """Return the path of a timm script given as a path or as a bare name found in ``$TIMM_SCRIPTS_DIR``.

    Raises:
        ValueError: The file name is not one of ``TIMM_SCRIPTS``.
        FileNotFoundError: The script does not exist.
    """
    path = Path(script).expanduser()
    if path.name not in TIMM_SCRIPTS:
        raise ValueError(
            f'{script!r} is not one of timm\'s scripts {", ".join(TIMM_SCRIPTS)}. Pass the path of one of them, for '
            f'example pytorch-image-models/train.py.')
    if path.is_file():
        return path.resolve()
    scripts_dir = os.environ.get('TIMM_SCRIPTS_DIR')
    if len(path.parts) == 1 and scripts_dir:
        candidate = Path(scripts_dir).expanduser() / path.name
        if candidate.is_file():
            return candidate.resolve()
        raise FileNotFoundError(
            f'Script {script!r} not found in the current folder or in TIMM_SCRIPTS_DIR={scripts_dir}. Set '
            f'TIMM_SCRIPTS_DIR to a checkout of https://github.com/huggingface/pytorch-image-models or pass a path.')
    raise FileNotFoundError(
        f'Script {script!r} not found. Pass the path of timm\'s {path.name} (from a checkout of '
        f'https://github.com/huggingface/pytorch-image-models), or set TIMM_SCRIPTS_DIR to that checkout.')


def _check_timm_source(script: Path) -> None:
    timm_dir = Path(timm.__file__).resolve().parent
    if timm_dir.parent == script.parent:
        raise RuntimeError(
            f'timm was imported from {timm_dir}, the source folder beside {script}, not from the installed package. '
            f'Run the command from another folder so that Python does not put {script.parent} on sys.path.')


def _is_cpu_module(module: nn.Module) -> bool:
    devices = {p.device.type for p in module.parameters()} | {b.device.type for b in module.buffers()}
    return devices <= {'cpu'}


def patch_ddp_for_cpu() -> None:
    """Make ``DistributedDataParallel`` ignore ``device_ids``/``output_device`` for modules on the CPU.

    PyTorch raises a ValueError for ``device_ids`` with a CPU module, and timm's train.py passes them on every
    device. Modules on other devices are wrapped unchanged. Calling this again has no further effect.
    """
    ddp_class = torch.nn.parallel.DistributedDataParallel
    original_init = ddp_class.__init__
    if getattr(original_init, '_timm_deluge_cpu_patch', False):
        return

    @functools.wraps(original_init)
    def __init__(self, module, device_ids=None, output_device=None, *args, **kwargs):
        if device_ids is not None and _is_cpu_module(module):
            device_ids, output_device = None, None
        original_init(self, module, device_ids, output_device, *args, **kwargs)

    __init__._timm_deluge_cpu_patch = True
    ddp_class.__init__ = __init__


def run_script(script: str, args: Sequence[str]) -> None:
    """Run a timm script as ``__main__`` with ``args`` as its command line and the DelugeNets registered.

    Raises:
        ValueError: ``script`` is not one of timm's scripts.
        FileNotFoundError: The script does not exist.
        RuntimeError: The imported timm is the source folder beside the script.
    """
    path = resolve_script(script)
    _check_timm_source(path)
    patch_ddp_for_cpu()
    rank = os.environ.get('RANK')
    prefix = f'rank {rank}: ' if rank is not None else ''
    print(
        f'{prefix}timm_deluge.launch: running {path} with timm {timm.__version__} from '
        f'{Path(timm.__file__).parent} and timm_deluge {timm_deluge.__version__}', file=sys.stderr, flush=True)
    saved_argv = sys.argv
    sys.argv = [str(path), *args]
    try:
        runpy.run_path(str(path), run_name='__main__')
    finally:
        sys.argv = saved_argv


def main(argv: Optional[List[str]] = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ('-h', '--help'):
        print(_USAGE, file=sys.stderr)
        raise SystemExit(0 if argv else 2)
    try:
        path = resolve_script(argv[0])
        _check_timm_source(path)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f'timm_deluge.launch: error: {e}', file=sys.stderr)
        raise SystemExit(2) from None
    run_script(str(path), argv[1:])


if __name__ == '__main__':
    main()
