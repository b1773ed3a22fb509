"""Publishing DelugeNet checkpoints as Hugging Face Hub model repos, and reading them back offline.

Run from a source checkout of timm-deluge, as modules of this folder:

* ``python -m hub.publish CHECKPOINT --tag TAG`` writes ``model.safetensors``, ``config.json`` and a
  ``README.md`` model card into a new folder, and uploads it with ``--push``.
* ``python -m hub.local_cache FOLDER --repo-id ORG/NAME`` adds a published folder to a local Hugging Face
  cache, so that ``HF_HUB_OFFLINE=1`` loads it as if it had been downloaded.
* ``python -m hub.evaluate MODEL --dataset torch/fashion_mnist --data-dir DIR`` measures top-1 and top-5
  accuracy and writes them in the results format of timm's ``validate.py``.

The package uses timm_deluge as a user would. The model core never imports it.
"""
