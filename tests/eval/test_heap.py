"""retained_heap: freed buffers are reused without faulting their pages in again (glibc)."""
import resource

import pytest

from cai.eval.heap import _glibc, retained_heap


def _faults_of_one_round(n: int = 3, size: int = 20 * 1024 * 1024) -> int:
    """Minor page faults while allocating ``n`` zeroed buffers of ``size`` bytes together (then freed)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffers = [bytearray(size) for _ in range(n)]
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del buffers
    return faults


@pytest.mark.skipif(_glibc() is None, reason="needs glibc")
def test_freed_buffers_are_reused_without_page_faults():
    pages = 3 * 20 * 1024 * 1024 // 4096
    # glibc's defaults: the buffers are mapped afresh or trimmed away, round after round
    assert min(_faults_of_one_round() for _ in range(4)) > pages // 2
    with retained_heap() as applied:
        assert applied
        _faults_of_one_round()  # the heap grows to hold them once
        assert max(_faults_of_one_round() for _ in range(3)) < pages // 20
    # afterwards glibc's starting thresholds are back and the heap top was given back
    assert _faults_of_one_round() > pages // 2


def test_without_glibc_the_block_runs_unchanged(monkeypatch):
    monkeypatch.setattr("cai.eval.heap._glibc", lambda: None)
    with retained_heap() as applied:
        assert applied is False
