"""Fixtures of the CDM tests: tiny Stable Diffusion models saved as local folders, a CAI split made
from the embedded sample's real images, and torch on one thread (tiny models gain nothing from two,
and two threads stall badly when another process holds a core)."""
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture(scope="session", autouse=True)
def _datasets_cache_in_tmp(tmp_path_factory):
    """``datasets.load_dataset`` of local folders writes Arrow caches: keep them under pytest's tmp."""
    import datasets
    before = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = tmp_path_factory.mktemp("hf_datasets_cache")
    yield
    datasets.config.HF_DATASETS_CACHE = before


@pytest.fixture(autouse=True)
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory):
    """A tiny random SD 1.x folder with a 4-channel UNet (text-to-image)."""
    from cai.cdm.tiny import build_tiny_sd
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd") / "model")


@pytest.fixture(scope="session")
def tiny_sd_inpainting(tmp_path_factory):
    """A tiny random SD 1.x folder with a 9-channel UNet (inpainting)."""
    from cai.cdm.tiny import build_tiny_sd
    return build_tiny_sd(tmp_path_factory.mktemp("tiny_sd_inpaint") / "model", inpainting=True)


@pytest.fixture(scope="session")
def cai_split(tmp_path_factory):
    """`cai-hub build-synthetic --quota 1,1,1` on the embedded sample: 18 real pseudo anomalies
    (cracks and stains in fabric and pavement images), a hub-ready folder."""
    from cai.cli import main

    out = tmp_path_factory.mktemp("cai") / "cai_split"
    result = CliRunner().invoke(main, ["build-synthetic", "--out", str(out), "--quota", "1,1,1", "--quiet"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return out


def _train(cai_split, model, out, **kwargs):
    from cai.cdm.train import CDMTrainConfig, train
    values = dict(train_data=str(cai_split), base_model=str(model), output_dir=str(out), resolution=32,
                  train_batch_size=3, max_train_steps=3, checkpointing_steps=1000, progress=False,
                  learning_rate=5e-2)
    values.update(kwargs)
    return train(CDMTrainConfig(**values))


@pytest.fixture
def train_tiny():
    """``train_tiny(cai_split, model, out, **config)``: a short CDM run with the tests' defaults."""
    return _train


@pytest.fixture(scope="session")
def trained_cdm(tmp_path_factory, cai_split, tiny_sd):
    """A CDM trained for 3 steps on the tiny 4-channel model: crack and stain, 2 spatial tokens."""
    out = tmp_path_factory.mktemp("cdm") / "cdm"
    _train(cai_split, tiny_sd, out, spatial_tokens=2)
    return out


@pytest.fixture(scope="session")
def trained_cdm_inpainting(tmp_path_factory, cai_split, tiny_sd_inpainting):
    """A CDM trained for 2 steps on the tiny inpainting model: crack only, no E_s."""
    out = tmp_path_factory.mktemp("cdm_inpaint") / "cdm"
    _train(cai_split, tiny_sd_inpainting, out, classes=("crack",), max_train_steps=2)
    return out
