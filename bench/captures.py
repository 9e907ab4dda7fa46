"""Realistic device traffic for benchmarks: the simulated patient through a protocol emulator,
talking to the host decoder in-process (so IntelliVue polls are answered as on a real link)."""

from __future__ import annotations

from datetime import datetime, timezone

from drivers.registry import decoder_class, make_emulator
from drivers.simulator.physiology import PhysiologyModel

START = datetime(2026, 11, 28, 9, 0, tzinfo=timezone.utc)
LINE_RATE = {"masimo": 960.0, "nonin": 960.0, "intellivue": 11520.0,  # bytes/s at 9600 / 115200 baud 8N1
             "datex": 1920.0}                                        # 19200 baud, 10 bits a byte


def device_capture(protocol: str, seconds: float, variant: str | None = None, scenario: str = "normal",
                   seed: int = 0, step: float = 0.25) -> bytes:
    """The bytes the device sends during ``seconds`` of simulated time."""
    emulator = make_emulator(protocol, variant)
    model = PhysiologyModel(scenario, seed=seed, start=START, waves=protocol in ("nonin", "datex", "hl7"))
    host = decoder_class(protocol)()
    sent = bytearray()
    to_device = host.start()
    while model.t < seconds:
        if to_device:
            reply = emulator.receive(to_device)
            sent += reply
            host.feed(reply)
        produced = emulator.produce(model.advance(step).snapshot)
        sent += produced
        host.feed(produced)
        to_device = host.take_output() + host.poll(model.t)
    return bytes(sent)
