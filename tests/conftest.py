"""Shared fixtures: a tiny synthetic dataset generated once per test session."""
import pytest

from facekd.data.synthetic import SyntheticParams, generate_synthetic

SYNTHETIC_PARAMS = SyntheticParams(identities=12, images_per_identity=6, val_identities=6, pairs=40, seed=7)


@pytest.fixture(scope="session")
def synthetic_params():
    """Sizes of the tiny synthetic dataset: .identities, .images_per_identity, .val_identities, .pairs, .seed."""
    return SYNTHETIC_PARAMS


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory, synthetic_params):
    """Folder (pathlib.Path) with train.rec/.idx/property and synth_easy/pose/age.bin of the tiny set."""
    out = tmp_path_factory.mktemp("synthetic") / "data"
    generate_synthetic(str(out), synthetic_params, workers=1, progress=False)
    return out
