#!/usr/bin/env python3
"""Line noise against the protocols that have no checksum (issue 11): what becomes vital signs?

Two measurements per protocol (Nonin format #8, Nonin ASCII, Masimo ASCII 1), each with the
decoder's clock advancing as a 9600-baud line would deliver the bytes (about 1 ms a byte):

* **Random bytes**: ``--bytes`` random bytes (default 1 MB) fed in reads of random sizes; counts the
  numerics emitted with a value, those without any quality flag, the lowest SpO2 among them, and
  the physiological alarms the clinic-default alarm engine starts on them. The target is none.
* **Single-bit flips**: a clean recording of 1 Hz frames (SpO2 and pulse rate wandering as a
  patient's do), one frame per read; per trial, one random bit of one random frame is flipped and
  the window around it decoded again. A trial counts as *changed unflagged* when some value comes
  out different from the clean decoding and carries no quality flag (``significant``: by more than
  5 points or beats). The fraction of trials is the figure (issue 11 measured 35 % for Nonin #8,
  8.3 % for Nonin ASCII and 1.4 % for Masimo before the structural checks).

Run: ``.venv/bin/python tools/fuzz_line_noise.py [--bytes N] [--trials N] [--seed N] [--json]``.
Nothing here is a test: tests/faults/test_line_noise.py asserts the targets on smaller runs of it.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drivers.base import Decoder  # noqa: E402
from drivers.masimo import MasimoDecoder, encode_line  # noqa: E402
from drivers.model import NumericObservation, Quality  # noqa: E402
from drivers.nonin import Nonin8Decoder, NoninAsciiDecoder, encode_ascii_line, encode_format8_frame  # noqa: E402
from monitor.alarms.engine import AlarmEngine  # noqa: E402
from monitor.alarms.profile import default_profile  # noqa: E402

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
BYTE_S = 10 / 9600          # one byte on a 9600-baud 8N1 line
WINDOW = 12                 # frames decoded on each side of a flipped one


class FeedClock:
    """The decoder's clock: advanced by the test as bytes arrive."""

    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


def _frames_nonin8(values: list[tuple[float, float]]) -> list[bytes]:
    return [encode_format8_frame(spo2, pr) for spo2, pr in values]


def _frames_ascii(values: list[tuple[float, float]]) -> list[bytes]:
    return [encode_ascii_line(spo2, pr) for spo2, pr in values]


def _frames_masimo(values: list[tuple[float, float]]) -> list[bytes]:
    start = T0.replace(tzinfo=None)
    return [encode_line({"spo2": spo2, "pr": pr, "pi": 2.1}, device_time=start + timedelta(seconds=i))
            for i, (spo2, pr) in enumerate(values)]


@dataclass(frozen=True)
class Protocol:
    """A protocol under test: its decoder and how its device frames 1 Hz values."""

    name: str
    decoder: Callable[[Callable[[], datetime]], Decoder]
    frames: Callable[[list[tuple[float, float]]], list[bytes]]


PROTOCOLS = (
    Protocol("nonin8", lambda clock: Nonin8Decoder(source="fuzz", clock=clock), _frames_nonin8),
    Protocol("nonin-ascii", lambda clock: NoninAsciiDecoder(source="fuzz", clock=clock), _frames_ascii),
    Protocol("masimo", lambda clock: MasimoDecoder(source="fuzz", clock=clock), _frames_masimo),
)


def _unflagged(obs: NumericObservation) -> bool:
    return not (obs.quality - {Quality.SIMULATED})


@dataclass
class NoiseResult:
    """What random bytes became (see the module docstring)."""

    protocol: str
    bytes: int
    values: int = 0
    unflagged: int = 0
    lowest_spo2: float | None = None
    alarms: int = 0
    frames_rejected: int = 0


def random_bytes(protocol: Protocol, size: int, seed: int) -> NoiseResult:
    """Feed ``size`` random bytes (reads of 1–512 bytes) to ``protocol``'s decoder."""
    rng = random.Random(seed)
    clock = FeedClock()
    decoder = protocol.decoder(clock)
    engine = AlarmEngine(default_profile())
    result = NoiseResult(protocol.name, size)
    data = rng.randbytes(size)
    offset = 0
    while offset < size:
        n = rng.randint(1, 512)
        piece = data[offset:offset + n]
        offset += n
        clock.advance(len(piece) * BYTE_S)
        items = decoder.feed(piece)
        for item in items:
            if isinstance(item, NumericObservation) and item.value is not None:
                result.values += 1
                if _unflagged(item):
                    result.unflagged += 1
                    if item.vital == "spo2":
                        low = result.lowest_spo2
                        result.lowest_spo2 = item.value if low is None else min(low, item.value)
        result.alarms += sum(1 for e in engine.process(items) if e.event == "started" and e.kind == "physiological")
    result.frames_rejected = decoder.stats.frames_rejected
    return result


def patient(count: int, seed: int) -> list[tuple[float, float]]:
    """``count`` seconds of SpO2 (%) and pulse rate (bpm) wandering as a patient's do."""
    rng = random.Random(seed)
    spo2, pr = 97.0, 75.0
    out = []
    for _ in range(count):
        spo2 = min(100.0, max(85.0, spo2 + rng.choice((-1, 0, 0, 0, 1))))
        pr = min(140.0, max(45.0, pr + rng.choice((-2, -1, 0, 0, 1, 2))))
        out.append((spo2, pr))
    return out


def _decode(protocol: Protocol, frames: list[bytes]) -> dict[tuple[int, str], NumericObservation]:
    """Each frame in its own read, one second apart; observations by (frame index, vital)."""
    clock = FeedClock()
    decoder = protocol.decoder(clock)
    out: dict[tuple[int, str], NumericObservation] = {}
    for frame in frames:
        clock.advance(1.0)
        for item in decoder.feed(frame):
            if isinstance(item, NumericObservation):
                index = round((item.sample_time - T0).total_seconds())
                out.setdefault((index, item.vital), item)
    return out


@dataclass
class FlipResult:
    """What single-bit flips did (see the module docstring)."""

    protocol: str
    trials: int
    changed_unflagged: int = 0
    significant: int = 0

    @property
    def fraction(self) -> float:
        """Trials with a value changed and unflagged, as a fraction."""
        return self.changed_unflagged / self.trials if self.trials else 0.0

    @property
    def significant_fraction(self) -> float:
        """Trials with a value changed unflagged by more than 5, as a fraction."""
        return self.significant / self.trials if self.trials else 0.0


def bit_flips(protocol: Protocol, trials: int, seed: int) -> FlipResult:
    """Flip one random bit of one random frame of a clean 1 Hz recording, ``trials`` times."""
    rng = random.Random(seed)
    frames = protocol.frames(patient(trials // 4 + 4 * WINDOW, seed))
    result = FlipResult(protocol.name, trials)
    for _ in range(trials):
        i = rng.randrange(2 * WINDOW, len(frames) - WINDOW)
        window = frames[i - 2 * WINDOW:i + WINDOW]
        clean = _decode(protocol, window)
        target = bytearray(window[2 * WINDOW])
        bit = rng.randrange(len(target) * 8)
        target[bit // 8] ^= 1 << (bit % 8)
        dirty = _decode(protocol, window[:2 * WINDOW] + [bytes(target)] + window[2 * WINDOW + 1:])
        changed = significant = False
        for key, obs in dirty.items():
            if obs.value is None or not _unflagged(obs):
                continue
            before = clean.get(key)
            if before is None or before.value != obs.value:
                changed = True
                if before is None or before.value is None or abs(before.value - obs.value) > 5:
                    significant = True
        result.changed_unflagged += changed
        result.significant += significant
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bytes", type=int, default=1_000_000, help="random bytes per protocol")
    parser.add_argument("--trials", type=int, default=2000, help="bit-flip trials per protocol")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="one JSON object per protocol")
    args = parser.parse_args(argv)
    for protocol in PROTOCOLS:
        noise = random_bytes(protocol, args.bytes, args.seed)
        flips = bit_flips(protocol, args.trials, args.seed)
        if args.json:
            print(json.dumps({**asdict(noise), "flip_trials": flips.trials, "flip_changed_unflagged": flips.fraction,
                              "flip_significant": flips.significant_fraction}))
            continue
        lowest = "—" if noise.lowest_spo2 is None else f"{noise.lowest_spo2:g} %"
        print(f"{protocol.name:12} random {noise.bytes:,} B: {noise.values} values ({noise.unflagged} unflagged, "
              f"lowest SpO2 {lowest}), {noise.alarms} alarms, {noise.frames_rejected} frames rejected | "
              f"bit flips: {flips.fraction:.1%} changed unflagged, {flips.significant_fraction:.1%} by > 5 "
              f"({flips.trials} trials)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
