"""PyTorch's CUDA caching allocator, replayed on the allocations of a fake step.

``torch.cuda.max_memory_allocated`` counts *blocks*, not tensors, and
``max_memory_reserved`` counts the *segments* the allocator took from the driver and
keeps: what a GPU must hold is the reserved peak. The rules below are those of
``c10/cuda/CUDACachingAllocator.cpp`` with the default configuration (no
``max_split_size_mb``, no ``roundup_power2_divisions``, no expandable segments), one
stream, and nothing released (``empty_cache`` is never called within a step):

- a request is rounded up to a multiple of 512 bytes (``kMinBlockSize``; below it, 512);
- requests up to 1 MiB (``kSmallSize``) come from the small pool, whose segments are
  2 MiB (``kSmallBuffer``); larger ones from the large pool, whose segments are 20 MiB
  (``kLargeBuffer``) for requests under 10 MiB (``kMinLargeAlloc``), else the request
  rounded up to 2 MiB (``kRoundLarge``);
- a request takes the smallest free block of its pool that is large enough (best fit;
  ties: the lower address), else a new segment;
- the block is split when what remains is at least 512 bytes (small pool) or more than
  1 MiB (large pool); an unsplit block is allocated whole, and counts whole;
- a freed block merges with the free blocks beside it in its segment.

:func:`replay` takes the step's allocation events in order (a storage allocated, with
its bytes; a storage freed) and returns the allocated and reserved peaks.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

MIN_BLOCK = 512                 # kMinBlockSize
SMALL_SIZE = 1 << 20            # kSmallSize: the largest request of the small pool
SMALL_BUFFER = 2 << 20          # kSmallBuffer: a small-pool segment
MIN_LARGE_ALLOC = 10 << 20      # kMinLargeAlloc
LARGE_BUFFER = 20 << 20         # kLargeBuffer
ROUND_LARGE = 2 << 20           # kRoundLarge

#: one event: ``(key, nbytes)`` allocates ``nbytes`` for ``key``; ``(key, None)`` frees it
Event = tuple[int, "int | None"]


def round_size(nbytes: int) -> int:
    """The block size a request of ``nbytes`` asks for."""
    if nbytes < MIN_BLOCK:
        return MIN_BLOCK
    return MIN_BLOCK * -(-nbytes // MIN_BLOCK)


def segment_size(size: int) -> int:
    """The segment ``cudaMalloc``'d when no cached block fits a (rounded) request."""
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * -(-size // ROUND_LARGE)


@dataclass(eq=False)
class _Block:
    segment: int
    offset: int
    size: int
    free: bool = True
    prev: _Block | None = None
    next: _Block | None = None


@dataclass
class CachingAllocator:
    """The allocator's state: segments, free blocks per pool, live blocks, peaks."""

    reserved: int = 0
    allocated: int = 0
    peak_reserved: int = 0
    peak_allocated: int = 0
    _segments: int = 0
    #: per pool (True: small), the free blocks sorted by (size, segment, offset)
    _free: dict[bool, list[tuple[int, int, int, _Block]]] = field(
        default_factory=lambda: {True: [], False: []})
    _live: dict[int, tuple[_Block, bool]] = field(default_factory=dict)

    def malloc(self, key: int, nbytes: int) -> None:
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        block = self._take(small, size)
        if block is None:
            block = self._new_segment(small, segment_size(size))
        remaining = block.size - size
        if remaining >= MIN_BLOCK if small else remaining > SMALL_SIZE:
            rest = _Block(block.segment, block.offset + size, remaining, True, block, block.next)
            if block.next is not None:
                block.next.prev = rest
            block.next, block.size = rest, size
            self._put(small, rest)
        block.free = False
        self._live[key] = (block, small)
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)

    def free(self, key: int) -> None:
        found = self._live.pop(key, None)
        if found is None:
            return
        block, small = found
        self.allocated -= block.size
        block.free = True
        for neighbour in (block.prev, block.next):
            if neighbour is not None and neighbour.free:
                self._remove(small, neighbour)
                if neighbour is block.prev:
                    neighbour.size += block.size
                    neighbour.next = block.next
                    if block.next is not None:
                        block.next.prev = neighbour
                    block = neighbour
                else:
                    block.size += neighbour.size
                    block.next = neighbour.next
                    if neighbour.next is not None:
                        neighbour.next.prev = block
        self._put(small, block)

    def _new_segment(self, small: bool, size: int) -> _Block:
        self._segments += 1
        self.reserved += size
        self.peak_reserved = max(self.peak_reserved, self.reserved)
        return _Block(self._segments, 0, size)

    def _take(self, small: bool, size: int) -> _Block | None:
        pool = self._free[small]
        index = bisect.bisect_left(pool, (size, -1, -1))
        if index == len(pool):
            return None
        return pool.pop(index)[3]

    def _put(self, small: bool, block: _Block) -> None:
        bisect.insort(self._free[small], (block.size, block.segment, block.offset, block),
                      key=lambda item: item[:3])

    def _remove(self, small: bool, block: _Block) -> None:
        pool = self._free[small]
        index = bisect.bisect_left(pool, (block.size, block.segment, block.offset),
                                   key=lambda item: item[:3])
        if index < len(pool) and pool[index][3] is block:
            pool.pop(index)


def replay(events: list[Event]) -> CachingAllocator:
    """The allocator after ``events``: its allocated and reserved peaks."""
    allocator = CachingAllocator()
    for key, nbytes in events:
        if nbytes is None:
            allocator.free(key)
        else:
            allocator.malloc(key, nbytes)
    return allocator
