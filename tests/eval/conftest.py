import importlib.util
from pathlib import Path

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One torch thread: on a shared 2-core machine, two OpenMP threads stall each other badly."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "evaluate"


@pytest.fixture(scope="session")
def evaluate_recipe():
    """``evaluate_recipe("compare_runs")``: the module of ``recipes/evaluate/compare_runs.py``."""
    def load(name: str):
        spec = importlib.util.spec_from_file_location(name, RECIPES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    return load
