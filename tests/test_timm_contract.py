"""timm's own feature-API tests, run on every DelugeNet name.

timm 1.0.31's ``tests/test_models.py`` parametrises ``test_model_forward_intermediates``,
``test_model_forward_intermediates_features`` and ``test_prune_intermediate_layers_contract`` over timm's own
modules only, so running that file with ``-k delugenet`` skips them for this family. This file calls the
three functions from timm's test module for every registered ``delugenet`` name.

Set ``TIMM_TESTS_DIR`` to the ``tests`` folder of timm's source distribution, for example::

    pip download --no-binary :all: --no-deps timm==1.0.31 -d /tmp/timm-sdist
    tar xzf /tmp/timm-sdist/timm-1.0.31.tar.gz -C /tmp/timm-sdist
    TIMM_TESTS_DIR=/tmp/timm-sdist/timm-1.0.31/tests python -m pytest tests/test_timm_contract.py

``.ci/run`` does this. Without the variable the tests are skipped.
"""
import importlib.util
import os
from pathlib import Path

import pytest
import timm

import timm_deluge  # noqa: F401  registers the family

TIMM_TESTS_DIR = os.environ.get('TIMM_TESTS_DIR', '')
MODEL_NAMES = timm.list_models('delugenet*')

pytestmark = pytest.mark.skipif(
    not TIMM_TESTS_DIR,
    reason="TIMM_TESTS_DIR is not set: point it to the tests/ folder of timm 1.0.31's sdist to run these",
)


@pytest.fixture(scope='module')
def timm_test_models():
    path = Path(TIMM_TESTS_DIR) / 'test_models.py'
    if not path.is_file():
        pytest.fail(f'TIMM_TESTS_DIR={TIMM_TESTS_DIR!r} has no test_models.py; unpack timm 1.0.31\'s sdist there.')
    spec = importlib.util.spec_from_file_location('timm_sdist_test_models', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('model_name', MODEL_NAMES)
def test_forward_intermediates(timm_test_models, model_name):
    timm_test_models.test_model_forward_intermediates(model_name, 1)


@pytest.mark.parametrize('model_name', MODEL_NAMES)
def test_forward_intermediates_features(timm_test_models, model_name):
    timm_test_models.test_model_forward_intermediates_features(model_name, 1)


@pytest.mark.parametrize('model_name', MODEL_NAMES)
def test_prune_contract(timm_test_models, model_name):
    timm_test_models.test_prune_intermediate_layers_contract(model_name)
