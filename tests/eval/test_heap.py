"""retained_heap: freed buffers stay in the heap and are reused; afterwards glibc's defaults are back.

Two independent views: glibc's own accounting (mallinfo2: bytes in mmapped chunks, heap size, free heap
bytes), which every glibc >= 2.33 reports, and the kernel's minor page-fault count, which some sandboxes
(gVisor) do not keep — that test is skipped where a fresh, touched mapping does not count a fault.
"""
import ctypes
import mmap
import resource

import pytest

from cai.eval.heap import _glibc, retained_heap

MIB = 1024 * 1024
SIZE = 20 * MIB  # below the 32 MiB mmap threshold the block sets, above glibc's 128 KiB start


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]


def _mallinfo2():
    libc = _glibc()
    if libc is None or not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _MallInfo2
    return libc.mallinfo2


def _kernel_counts_minor_faults() -> bool:
    """True when touching the pages of a fresh anonymous mapping raises ru_minflt."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    region = mmap.mmap(-1, 64 * 4096)
    for offset in range(0, 64 * 4096, 4096):
        region[offset] = 1
    region.close()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before >= 32


def _hold_buffers(n: int = 3, observe=None):
    """Allocate ``n`` zeroed buffers of SIZE bytes together, call ``observe()`` while they are held, free
    them; returns what observe returned."""
    buffers = [bytearray(SIZE) for _ in range(n)]
    seen = observe() if observe else None
    del buffers
    return seen


@pytest.mark.skipif(_mallinfo2() is None, reason="needs glibc >= 2.33 (mallinfo2)")
def test_buffers_come_from_the_heap_and_stay_there_then_are_given_back():
    info = _mallinfo2()
    with retained_heap() as applied:
        assert applied
        mapped_before = info().hblkhd
        held = _hold_buffers(observe=info)
        # inside the block the 20 MiB buffers are heap chunks, not separate mappings
        assert held.hblkhd - mapped_before < SIZE
        assert held.uordblks >= 3 * SIZE
        after_free = info()
        assert after_free.fordblks >= 3 * SIZE  # freed, kept in the heap (not trimmed)
        arena = after_free.arena
        _hold_buffers()
        assert info().arena <= arena + MIB  # the second round reuses them: the heap does not grow
    # afterwards glibc's starting mmap threshold holds again: such buffers are separate mappings
    mapped_before = info().hblkhd
    held = _hold_buffers(observe=info)
    assert held.hblkhd - mapped_before >= 3 * SIZE


@pytest.mark.skipif(_glibc() is None or not _kernel_counts_minor_faults(),
                    reason="needs glibc and a kernel that counts minor page faults")
def test_reused_buffers_fault_no_pages_in_again():
    pages = 3 * SIZE // 4096

    def faults_of_one_round() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        _hold_buffers()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    with retained_heap():
        faults_of_one_round()  # the heap grows to hold them once
        assert max(faults_of_one_round() for _ in range(3)) < pages // 20
    # glibc's starting thresholds again: every round maps (or grows the heap) and faults afresh
    assert faults_of_one_round() > pages // 2


def test_without_glibc_the_block_runs_unchanged(monkeypatch):
    monkeypatch.setattr("cai.eval.heap._glibc", lambda: None)
    with retained_heap() as applied:
        assert applied is False
