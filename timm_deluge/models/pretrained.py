"""Hub organisation of published DelugeNet weights, and errors for missing or unloadable weights.

timm reads pretrained weights from a configuration's ``hf_hub_id``, ``url`` or ``file``, from an
``hf-hub:``/``local-dir:`` model name, or from ``pretrained_cfg_overlay``. This module checks that one of
those exists before a model is built with ``pretrained=True``, and names the weight file when loading fails.
"""
import os
import pickle
from pathlib import Path
from typing import Any, Dict, Optional

from safetensors import SafetensorError
from timm.models import PretrainedCfg, resolve_pretrained_cfg

__all__ = ['HUB_ORG', 'WEIGHT_LOAD_ERRORS', 'describe_weight_source', 'resolve_weight_source']

# Hugging Face Hub organisation of this project's weights. Configurations name repos in it, and the
# publishing tool in hub/ pushes to it. TIMM_DELUGE_HUB_ORG replaces it, e.g. with a personal account.
HUB_ORG: str = os.environ.get('TIMM_DELUGE_HUB_ORG', 'timm-deluge')

# Training recipes (YAML files for timm's train.py) in a source checkout of timm-deluge. Installed wheels have none.
_RECIPE_DIR = Path(__file__).resolve().parents[2] / 'train_configs'

# Errors from reading or applying a weight file: a truncated or corrupted file (safetensors, zip or pickle),
# or a state dict whose keys or shapes do not match the model (torch's load_state_dict).
WEIGHT_LOAD_ERRORS = (RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError)


def resolve_weight_source(variant: str, kwargs: Dict[str, Any]) -> PretrainedCfg:
    """Resolve the pretrained configuration of a ``pretrained=True`` request and check it names weights.

    Args:
        variant: Architecture name, without tag.
        kwargs: Keyword arguments of the model entrypoint, read for ``pretrained_cfg`` and
            ``pretrained_cfg_overlay``.

    Raises:
        RuntimeError: If the configuration names no weights, because none were published for it.
    """
    pretrained_cfg = resolve_pretrained_cfg(
        variant,
        pretrained_cfg=kwargs.get('pretrained_cfg'),
        pretrained_cfg_overlay=kwargs.get('pretrained_cfg_overlay'),
    )
    if pretrained_cfg.has_weights or pretrained_cfg.state_dict is not None:
        return pretrained_cfg

    name = f'{variant}.{pretrained_cfg.tag}' if pretrained_cfg.tag else variant
    raise RuntimeError(
        f'No pretrained weights are published for {name}: its configuration names no Hugging Face Hub repo, '
        f'URL or file. Create it with pretrained=False and train it with {_recipe_hint(variant, pretrained_cfg)}, '
        f'or load your own weights with '
        f"pretrained_cfg_overlay=dict(file='model.safetensors'), checkpoint_path=..., or a 'local-dir:' or "
        f"'hf-hub:' model name.")


def _recipe_hint(variant: str, pretrained_cfg: PretrainedCfg) -> str:
    # Recipes are named <architecture>_<tag>.yaml, and <architecture>_imagenet.yaml for untagged ImageNet models.
    recipe = _RECIPE_DIR / f"{variant}_{pretrained_cfg.tag or 'imagenet'}.yaml"
    if recipe.is_file():
        return f'the recipe train_configs/{recipe.name}'
    return 'a recipe from train_configs/ in the timm-deluge repository'


def _cached_hub_file(repo_id: str, filenames: tuple, revision: Optional[str]) -> Optional[str]:
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        path = try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(path, str):
            return path
    return None


def describe_weight_source(pretrained_cfg: PretrainedCfg) -> str:
    """Name the weight file that timm reads for this configuration, in the order timm 1.0 resolves sources."""
    if pretrained_cfg.source == 'local-dir' or (pretrained_cfg.source != 'hf-hub' and pretrained_cfg.file):
        path = Path(pretrained_cfg.file)
        if path.is_dir() and (path / 'model.safetensors').is_file():
            return f"'{path / 'model.safetensors'}'"
        return f"'{path}'"
    if pretrained_cfg.source != 'hf-hub' and pretrained_cfg.state_dict is not None:
        return 'the state_dict in pretrained_cfg'
    if pretrained_cfg.hf_hub_id:
        repo_id, _, revision = pretrained_cfg.hf_hub_id.partition('@')
        if pretrained_cfg.hf_hub_filename:
            filenames = (pretrained_cfg.hf_hub_filename,)
        else:
            # timm reads model.safetensors first and falls back to the pickled pytorch_model.bin.
            filenames = ('model.safetensors', 'pytorch_model.bin')
        cached = _cached_hub_file(repo_id, filenames, revision or None)
        where = f"'{cached}'" if cached else ' or '.join(filenames)
        return f"{where} of the Hugging Face Hub repo '{pretrained_cfg.hf_hub_id}'"
    return f"'{pretrained_cfg.url}'"
