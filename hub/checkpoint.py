"""Read training checkpoints safely and check that they match a model.

Pickled checkpoints (``.pth``, ``.pth.tar``, ``.bin``) are read with ``torch.load(weights_only=True)``, which
rejects arbitrary Python objects. The only extra type allowed is ``argparse.Namespace``, because timm's
``CheckpointSaver`` stores the training arguments as one.
"""
import argparse
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import safetensors.torch
import torch
import torch.nn as nn
from safetensors import SafetensorError
from timm.models import clean_state_dict

__all__ = ['CheckpointError', 'TrainingCheckpoint', 'read_checkpoint', 'load_matching_state_dict']

# Keys of the raw and EMA model weights in checkpoints written by timm's CheckpointSaver and by older
# timm-style scripts, in order of preference.
_WEIGHT_KEYS = ('state_dict', 'model')
_EMA_KEYS = ('state_dict_ema', 'model_ema')
# Number of key names shown in a mismatch message before the rest are only counted.
_MAX_KEYS_SHOWN = 6


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not match the requested model."""


@dataclass
class TrainingCheckpoint:
    """Weights and training metadata read from one checkpoint file."""
    path: Path
    state_dict: Dict[str, torch.Tensor]
    weights_key: str  # 'state_dict', 'state_dict_ema', ... or '' for a bare state dict
    arch: Optional[str] = None
    args: Dict[str, Any] = field(default_factory=dict)
    epoch: Optional[int] = None
    metric: Optional[float] = None


def _torch_load_weights_only(path: Path) -> Any:
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as e:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
        raise CheckpointError(
            f"'{path}' stores Python objects that torch.load(weights_only=True) does not allow "
            f"({', '.join(unsafe) or e}). Re-save only its tensors, e.g. as a safetensors file of the state dict."
        ) from e
    except (RuntimeError, EOFError) as e:
        raise CheckpointError(
            f"'{path}' is not a readable PyTorch checkpoint, it is truncated or corrupted: {e}") from e


def _select_weights(checkpoint: Any, path: Path, use_ema: bool) -> tuple:
    if not isinstance(checkpoint, dict):
        raise CheckpointError(
            f"'{path}' contains a {type(checkpoint).__name__}, not a state dict or a checkpoint dict.")
    if all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        if use_ema:
            raise CheckpointError(
                f"'{path}' is a bare state dict without EMA weights. Publish it without --ema.")
        return checkpoint, ''

    keys = _EMA_KEYS if use_ema else _WEIGHT_KEYS
    for key in keys:
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key], key
    weights_kind = 'EMA weights' if use_ema else 'model weights'
    hint = ' Train with --model-ema to keep them, or publish without --ema.' if use_ema else ''
    raise CheckpointError(
        f"'{path}' has no {weights_kind}: none of the keys {list(keys)} is present. "
        f"Its top-level keys are {sorted(checkpoint)}.{hint}")


def read_checkpoint(path: Union[str, Path], use_ema: bool = False) -> TrainingCheckpoint:
    """Read the weights and training metadata of a checkpoint.

    Args:
        path: A checkpoint of timm's ``train.py`` or of this project's trainer (``.pth.tar`` with
            ``state_dict``, ``state_dict_ema``, ``arch``, ``args``, ``epoch``, ``metric``), a bare state dict
            (``.pth``, ``.bin``) or a ``.safetensors`` file.
        use_ema: Read the EMA weights (``state_dict_ema``) in place of the raw model weights.

    Raises:
        FileNotFoundError: If the file does not exist.
        CheckpointError: If the file is truncated, corrupted, unsafe to unpickle, or lacks the requested weights.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint '{path}' not found.")

    if path.suffix == '.safetensors':
        if use_ema:
            raise CheckpointError(
                f"'{path}' is a safetensors file, which contains one set of weights and no EMA copy. "
                f"Publish it without --ema.")
        try:
            state_dict = safetensors.torch.load_file(path, device='cpu')
        except SafetensorError as e:
            raise CheckpointError(
                f"'{path}' is not a readable safetensors file, it is truncated or corrupted: {e}") from e
        return TrainingCheckpoint(path=path, state_dict=state_dict, weights_key='')

    checkpoint = _torch_load_weights_only(path)
    state_dict, weights_key = _select_weights(checkpoint, path, use_ema)
    args = checkpoint.get('args') if weights_key else None
    if isinstance(args, argparse.Namespace):
        args = vars(args)
    return TrainingCheckpoint(
        path=path,
        state_dict=clean_state_dict(state_dict),
        weights_key=weights_key,
        arch=checkpoint.get('arch') if weights_key else None,
        args=dict(args or {}),
        epoch=checkpoint.get('epoch') if weights_key else None,
        metric=checkpoint.get('metric') if weights_key else None,
    )


def _list_keys(keys: List[str]) -> str:
    listed = ', '.join(keys[:_MAX_KEYS_SHOWN])
    more = len(keys) - _MAX_KEYS_SHOWN
    return f'{listed} and {more} more' if more > 0 else listed


def load_matching_state_dict(
        model: nn.Module,
        state_dict: Dict[str, torch.Tensor],
        path: Union[str, Path],
        model_name: str,
) -> None:
    """Load a state dict into a model, requiring the same keys and shapes.

    Raises:
        CheckpointError: Naming the file, the model and every missing, unexpected or differently shaped key.
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f'{k} {tuple(v.shape)} in the file, {tuple(expected[k].shape)} in the model'
        for k, v in state_dict.items() if k in expected and v.shape != expected[k].shape
    ]
    problems = []
    if missing:
        problems.append(f'{len(missing)} missing keys ({_list_keys(missing)})')
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected keys ({_list_keys(unexpected)})')
    if mismatched:
        problems.append(f'{len(mismatched)} shape mismatches ({_list_keys(mismatched)})')
    if problems:
        raise CheckpointError(
            f"The weights in '{path}' do not match {model_name}: {'; '.join(problems)}. "
            f"Check that --model names the architecture the checkpoint was trained as.")
    model.load_state_dict(state_dict, strict=True)
