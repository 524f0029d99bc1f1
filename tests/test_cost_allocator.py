"""PyTorch's CUDA caching allocator replayed (:mod:`archlint.cost.allocator`): each case
worked by hand from CUDACachingAllocator.cpp's rules."""

from __future__ import annotations

import pytest

from archlint.cost.allocator import replay, round_size, segment_size

MiB = 1 << 20


def test_requests_round_to_512_bytes_and_segments_by_pool():
    assert [round_size(n) for n in (1, 511, 512, 513, 4096)] == [512, 512, 512, 1024, 4096]
    assert segment_size(512) == segment_size(MiB) == 2 * MiB          # small pool
    assert segment_size(MiB + 512) == segment_size(10 * MiB - 512) == 20 * MiB
    assert segment_size(10 * MiB) == 10 * MiB and segment_size(11 * MiB + 1) == 12 * MiB


def test_large_blocks_split_reuse_and_merge():
    """3 MiB opens a 20 MiB segment (17 MiB left, split off); 15 MiB fits the 17 (2 MiB
    left > 1 MiB: split); 12 MiB fits nothing free: a 12 MiB segment (reserved 32).
    Freeing 15 and 3 merges the first segment back to one 20 MiB block; 19.5 MiB takes
    it whole (0.5 MiB left is not worth a split) and counts as 20 MiB allocated."""
    events = [(1, 3 * MiB), (2, 15 * MiB), (3, 12 * MiB), (2, None), (1, None),
              (4, 19 * MiB + MiB // 2)]
    allocator = replay(events)
    assert allocator.reserved == allocator.peak_reserved == 32 * MiB
    assert allocator.allocated == 12 * MiB + 20 * MiB
    assert allocator.peak_allocated == 32 * MiB


def test_the_small_pool_packs_requests_into_2_mib_segments():
    """100 B takes 512 of a 2 MiB segment; 1 MiB (still small) fits the rest; 1 MiB and
    1 byte is large: a 20 MiB segment of its own."""
    allocator = replay([(1, 100), (2, MiB), (3, MiB + 1)])
    assert allocator.peak_reserved == 2 * MiB + 20 * MiB
    assert allocator.peak_allocated == 512 + MiB + MiB + 512


def test_a_freed_block_is_reused_before_a_new_segment():
    allocator = replay([(1, 8 * MiB), (1, None), (2, 8 * MiB), (2, None), (3, 20 * MiB)])
    # 8 MiB twice from one 20 MiB segment; 20 MiB then takes that whole free segment
    assert allocator.peak_reserved == 20 * MiB and allocator.peak_allocated == 20 * MiB


@pytest.mark.parametrize("device", ["a100-80gb", "cpu"])
def test_a_gpu_prediction_carries_the_allocators_peaks(device):
    """On a GPU the reserved peak is at least the allocated one, which is at least the
    tensors' own peak (blocks round up); on the CPU there is no allocator to replay."""
    import archlint

    target = archlint.analyze("fixtures/gpt_sdpa.py", seq_len="1024", dynamic=False,
                              device=device).cost.target
    if device == "cpu":
        assert target.allocator_peaks is None
        return
    allocated, reserved = target.allocator_peaks
    assert target.peak <= allocated <= reserved
    # the segments it keeps are 2 or 20 MiB (or a large request rounded to 2 MiB): at
    # most one segment per pool is partly empty at the reserved peak in this small step
    assert reserved - allocated < 2 * 20 * MiB
    text = archlint.analyze("fixtures/gpt_sdpa.py", seq_len="1024", dynamic=False,
                            device=device).cost.render_text()
    assert "reserved (segments)" in text
