"""Preallocated ring buffers for plotting: the newest samples always available as one contiguous
numpy view, without copying.

:class:`RingBuffer` writes every sample twice, at slot ``i`` and ``i + capacity`` of an array of
twice the capacity, so that the last ``capacity`` samples always lie side by side somewhere in it
(the trick of Friture's and pyacq's ring buffers). Unwritten slots hold NaN, which a curve drawn
with ``connect='finite'`` shows as a gap. A growing buffer never wraps, so it keeps a single copy
(a 24-hour trend would otherwise hold every sample twice: docs/reliability.md#soak).

:class:`TimedRing` pairs a float64 time ring with a value ring for trends; it can grow instead of
dropping its oldest samples, so that a whole session stays plottable.

No Qt here: these are plain numpy containers, testable on their own.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, DTypeLike


class RingBuffer:
    """The last ``capacity`` samples of a stream, as a contiguous view.

    ``extend`` writes samples (an input longer than the capacity keeps only its newest
    ``capacity``); ``view`` returns the newest samples oldest first, as a view into the buffer
    (valid until the next ``extend``: copy it to keep it). Unwritten slots are NaN for floating
    dtypes and 0 otherwise. ``len()`` is the number of samples written so far, at most
    ``capacity``. With ``grow=True`` the buffer doubles its capacity instead of overwriting
    its oldest samples (a growing array, for data that must all stay on screen): it keeps one
    copy of its samples, not two, and ``view`` returns only samples written (no NaN before them).
    """

    def __init__(self, capacity: int, dtype: DTypeLike = np.float32, grow: bool = False) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, not {capacity}")
        self.dtype = np.dtype(dtype)
        self.grow = grow
        self._capacity = int(capacity)
        self._buffer = self._empty(self._storage(self._capacity))
        self._written = 0  # samples written since the last clear

    def _storage(self, capacity: int) -> int:
        """Slots for ``capacity`` samples: twice as many (the mirror) unless growing."""
        return capacity if self.grow else 2 * capacity

    def _empty(self, size: int) -> np.ndarray:
        fill = np.nan if np.issubdtype(self.dtype, np.floating) else 0
        return np.full(size, fill, dtype=self.dtype)

    @property
    def capacity(self) -> int:
        """The number of samples the buffer holds (may rise when ``grow`` is set)."""
        return self._capacity

    @property
    def nbytes(self) -> int:
        """Bytes of sample storage held."""
        return self._buffer.nbytes

    @property
    def written(self) -> int:
        """Samples written since creation or the last :meth:`clear` (not capped)."""
        return self._written

    def __len__(self) -> int:
        return min(self._written, self._capacity)

    def clear(self) -> None:
        """Forget every sample (slots become NaN again)."""
        self._buffer.fill(np.nan if np.issubdtype(self.dtype, np.floating) else 0)
        self._written = 0

    def append(self, value: float) -> None:
        """Write one sample."""
        self.extend((value,))

    def extend(self, samples: ArrayLike) -> None:
        """Write ``samples`` (1-D) after the ones already held; an empty input does nothing."""
        data = np.asarray(samples, dtype=self.dtype).reshape(-1)
        count = len(data)
        if count == 0:
            return
        if self.grow:
            if self._written + count > self._capacity:
                self._grow_to(self._written + count)
            self._buffer[self._written:self._written + count] = data
            self._written += count
            return
        capacity = self._capacity
        if count > capacity:
            self._written += count - capacity
            data = data[-capacity:]
            count = capacity
        start = self._written % capacity
        end = start + count
        buffer = self._buffer
        buffer[start:end] = data                     # slots start.. (crossing into the mirror half)
        if end <= capacity:
            buffer[start + capacity:end + capacity] = data
        else:
            split = capacity - start
            buffer[start + capacity:] = data[:split]
            buffer[:end - capacity] = data[split:]
        self._written += count

    def _grow_to(self, needed: int) -> None:
        capacity = self._capacity
        while capacity < needed:
            capacity *= 2
        current = self.view(len(self))
        buffer = self._empty(self._storage(capacity))
        buffer[:len(current)] = current
        self._buffer = buffer
        self._capacity = capacity
        self._written = len(current)

    def view(self, count: int | None = None) -> np.ndarray:
        """The newest ``count`` samples (default: ``capacity``, NaN where never written; a growing
        buffer: at most those written), oldest first, as a contiguous view without copying."""
        capacity = self._capacity
        count = capacity if count is None else max(0, min(int(count), capacity))
        if self.grow:   # one copy, never wrapped: the samples are slots 0 .. written
            count = min(count, self._written)
            return self._buffer[self._written - count:self._written]
        end = self._written % capacity + capacity
        return self._buffer[end - count:end]


class TimedRing:
    """Timestamped samples for trends: times (float64, e.g. POSIX seconds) and values.

    Fixed ``capacity`` keeps the newest samples; ``grow=True`` (the default) keeps everything,
    doubling its storage when full. :meth:`view` returns only the samples written, as
    contiguous views ``(t, v)`` without copying. Times should be appended in order.
    """

    def __init__(self, capacity: int = 4096, dtype: DTypeLike = np.float32, grow: bool = True) -> None:
        self._times = RingBuffer(capacity, np.float64, grow=grow)
        self._values = RingBuffer(capacity, dtype, grow=grow)

    def __len__(self) -> int:
        return len(self._values)

    @property
    def capacity(self) -> int:
        """The number of samples held before growing or overwriting."""
        return self._values.capacity

    def append(self, t: float, value: float) -> None:
        """Add one sample at time ``t`` (NaN value: a gap)."""
        self._times.append(t)
        self._values.append(value)

    def extend(self, times: ArrayLike, values: ArrayLike) -> None:
        """Add samples; ``times`` and ``values`` must have the same length."""
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        values = np.asarray(values).reshape(-1)
        if len(times) != len(values):
            raise ValueError(f"{len(times)} times for {len(values)} values")
        self._times.extend(times)
        self._values.extend(values)

    @property
    def nbytes(self) -> int:
        """Bytes of sample storage held (times and values)."""
        return self._times.nbytes + self._values.nbytes

    def last_time(self) -> float | None:
        """Time of the newest sample, or None when empty."""
        return float(self._times.view(1)[0]) if len(self) else None

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        """``(t, v)`` of the samples held, oldest first (views: copy them to keep them)."""
        count = len(self)
        return self._times.view(count), self._values.view(count)

    def clear(self) -> None:
        """Forget every sample."""
        self._times.clear()
        self._values.clear()
