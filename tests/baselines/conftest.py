import pytest

from tests.baselines.test_baselines import _make_bank, _texture


@pytest.fixture(scope="module")
def bank():
    """Eight dark-ellipse patterns, long sides 8-90 px."""
    return _make_bank([8, 14, 22, 30, 40, 50, 60, 90])


@pytest.fixture(scope="module")
def normals():
    """Four 64 x 64 RGB textures."""
    return [_texture(i) for i in range(4)]
