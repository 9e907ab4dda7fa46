"""Benchmarks of the HL7/MLLP and GE/Datex S/5 drivers and of probing (issue 13).

* Datex decode throughput: a realistic capture (the simulated patient through the S/5 emulator:
  displayed values every 5 s, ECG + pleth + CO2 waveforms) decoded as ``vigil decode`` does —
  64 KiB reads, items consumed and dropped — as a multiple of the line rate (19200 baud 8E1 =
  1,745 bytes/s; the figure uses 1,920 bytes/s, 10 bits a byte, as for the other serial
  protocols). Target: ≥ 10,000×.
* HL7 decode throughput: messages a second on one core for each sender style of the emulator
  (PCD-01 with waveforms, LOINC, vendor-local codes), acknowledgements built and taken.
* HL7 end to end: a sender pushing 5,000 messages as fast as it can into Vigil's MLLP listener
  (acquisition worker, decoding, acknowledgements through the loopback socket): messages a second
  until the last acknowledgement, and how many batches the worker emitted.
* Probing time per port: ``probe_port`` with the default plan on a pseudo-terminal served by the
  simulator for each serial protocol, and on a silent one (which takes the whole plan).
"""

from __future__ import annotations

import gc
import os
import socket
import threading
import time
import tty
from datetime import datetime, timezone

from bench.captures import LINE_RATE, device_capture
from drivers.acquisition import AcquisitionWorker
from drivers.datex import DatexDecoder
from drivers.hl7.host import Hl7Decoder
from drivers.hl7.link import MllpServerLink
from drivers.hl7.mllp import Unframer, frame
from drivers.probe import probe_port
from drivers.simulator.serve import PtyServer

DATEX_LINE_RATE = LINE_RATE["datex"]
TARGET_BYTES = 20_000_000


def _stream(decoder, data: bytes) -> tuple[float, int]:
    items = 0
    started = time.perf_counter()
    for offset in range(0, len(data), 65536):
        items += len(decoder.feed(data[offset:offset + 65536]))
        decoder.take_output()
    return time.perf_counter() - started, items


def datex_throughput() -> dict[str, float]:
    """Bytes/s and multiple of the line rate (best of 3)."""
    one = device_capture("datex", 2 * 3600)
    data = one * max(1, TARGET_BYTES // len(one))
    gc.collect()
    best, items = min(_stream(DatexDecoder(), data) for _ in range(3))
    rate = len(data) / best
    figures = {"bytes": len(data), "items": items, "mb_per_s": round(rate / 1e6, 2),
               "x_line_rate": round(rate / DATEX_LINE_RATE),
               "capture_bytes_per_s": round(len(one) / (2 * 3600), 1)}
    print(f"decode datex      {rate / 1e6:6.2f} MB/s = {rate / DATEX_LINE_RATE:7.0f}x line rate "
          f"(the emulated monitor sends {figures['capture_bytes_per_s']} bytes/s)")
    return figures


def hl7_throughput() -> dict[str, dict[str, float]]:
    """Messages/s on one core per sender style (best of 3)."""
    out = {}
    for variant in ("pcd01", "loinc", "local"):
        one = device_capture("hl7", 1800, variant=variant)
        data = one * max(1, 10_000_000 // len(one))
        messages = len(Unframer().feed(data))
        gc.collect()
        best, items = min(_stream(Hl7Decoder(bed="1"), data) for _ in range(3))
        out[variant] = {"messages": messages, "messages_per_s": round(messages / best),
                        "mb_per_s": round(len(data) / best / 1e6, 2), "items": items}
        print(f"decode hl7 {variant:6s} {messages / best:8.0f} messages/s ({len(data) / best / 1e6:.2f} MB/s)")
    return out


def _message(n: int) -> bytes:
    text = (f"MSH|^~\\&|MON|ICU|VIGIL|VIGIL|20261128100000+0000||ORU^R01^ORU_R01|M{n}|P|2.6|||AL|NE\r"
            "PID|||SIM-0001^^^H^MR\rPV1||O|CHAIRS^1^1\r"
            "OBR|1|||182777000^monitoring of patient^SCT|||20261128100000+0000\r"
            f"OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|{60 + n % 40}|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R\r"
            "OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.2|97|262688^MDC_DIM_PERCENT^MDC|||||R\r"
            "OBX|3|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.1.1.3|71|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R\r"
            "OBX|4|NM|151562^MDC_RESP_RATE^MDC|1.1.1.4|14|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R\r"
            "OBX|5|NM|151708^MDC_AWAY_CO2_ET^MDC|1.1.1.5|38|266016^MDC_DIM_MMHG^MDC|||||R\r")
    return frame(text.encode())


class _Count:
    def __init__(self) -> None:
        self.batches = 0
        self.items = 0

    def items_received(self, items) -> None:
        self.batches += 1
        self.items += len(items)

    def link_changed(self, *args) -> None:
        pass


def hl7_socket(count: int = 5000) -> dict[str, float]:
    """A flood through Vigil's listener on loopback: messages/s until the last acknowledgement."""
    link = MllpServerLink("127.0.0.1", 0, bed="1")
    counter = _Count()
    worker = AcquisitionWorker(link, [counter])
    worker.start()
    while link.address is None:
        time.sleep(0.01)
    payload = b"".join(_message(n) for n in range(count))
    sock = socket.create_connection(link.address)
    acks = bytearray()

    def drain() -> None:
        unframer, seen = Unframer(), 0
        while seen < count:
            chunk = sock.recv(65536)
            if not chunk:
                return
            seen += len(unframer.feed(chunk))
        acks.extend(b"done")

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    started = time.perf_counter()
    sock.sendall(payload)
    thread.join(60)
    elapsed = time.perf_counter() - started
    sock.close()
    worker.stop(2.0)
    figures = {"messages": count, "messages_per_s": round(count / elapsed), "batches": counter.batches,
               "all_acknowledged": bool(acks)}
    print(f"hl7 over loopback {count / elapsed:8.0f} messages/s acknowledged end to end "
          f"({counter.batches} batches for {count} messages)")
    return figures


def probing() -> dict[str, float]:
    """Seconds to probe a port, per protocol served, and for a silent port."""
    out = {}
    for protocol, variant in (("masimo", None), ("nonin", "2"), ("nonin", "ascii"), ("intellivue", None),
                              ("datex", None)):
        server = PtyServer(protocol, variant=variant)
        path = server.open()
        stop = threading.Event()
        thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
        thread.start()
        time.sleep(0.2)
        report = probe_port(path)
        stop.set()
        thread.join(2)
        server.close()
        name = protocol if variant in (None, "2") else f"{protocol}-{variant}"
        out[name] = {"seconds": round(report.seconds, 2), "found": report.found.protocol if report.found else None}
        print(f"probe {name:12s} {report.seconds:5.1f} s -> {out[name]['found']}")
    master, slave = os.openpty()
    tty.setraw(slave)
    report = probe_port(os.ttyname(slave))
    os.close(master)
    os.close(slave)
    out["silent"] = {"seconds": round(report.seconds, 2), "found": None}
    print(f"probe {'silent':12s} {report.seconds:5.1f} s -> nothing (the whole plan)")
    return out


def run() -> dict:
    """All figures of this suite."""
    return {
        "datex_decode": datex_throughput(),
        "hl7_decode": hl7_throughput(),
        "hl7_socket": hl7_socket(),
        "probe": probing(),
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
