"""The command-line contract: `vigil decode`, `vigil devices`, argument errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from drivers.intellivue.device import build_numerics_reply
from monitor.cli import run_cli

ROOT = Path(__file__).resolve().parent.parent

# Three lines a second apart, a garbage line, three more (a line is believed once three consistent
# lines follow each other: drivers.base.SyncGate).
MASIMO = b"".join(
    f"02/22/16 22:47:{45 + i} SN=0000012345 SPO2=098% BPM=066 PI=02.58% SPCO=--.-% SPMET=--.-% "
    f"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n".encode() for i in range(3)
) + b"this line is garbage\r\n" + b"".join(
    f"02/22/16 22:47:{48 + i} SN=0000012345 SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% "
    f"DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000821\r\n".encode() for i in range(3)
)


def cli(*args: str) -> tuple[int, list[dict], str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_cli(list(args), out=out, err=err)
    return status, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_decode_masimo_capture(tmp_path):
    capture = tmp_path / "rad8.txt"
    capture.write_bytes(MASIMO)
    status, lines, err = cli("decode", "--protocol", "masimo", str(capture))
    assert status == 0
    assert lines[0] == {"kind": "numeric", "vital": "spo2", "value": 98.0, "unit": "%",
                        "device_time": "2016-02-22T22:47:45"}
    assert {"kind": "numeric", "vital": "pr", "value": 66.0, "unit": "bpm",
            "device_time": "2016-02-22T22:47:45"} in lines
    assert {"kind": "numeric", "vital": "spco", "value": None, "unit": "%",
            "device_time": "2016-02-22T22:47:45"} in lines
    conditions = [line for line in lines if line["kind"] == "condition"]
    assert conditions == [{"kind": "condition", "code": "no_sensor", "active": True},
                          {"kind": "condition", "code": "sensor_off", "active": True}]
    missing = [line for line in lines if line["kind"] == "numeric" and line["device_time"] == "2016-02-22T22:47:48"]
    assert missing and all(line["value"] is None for line in missing)
    assert not any(line["kind"] == "attribute" for line in lines)
    assert "6 frames decoded, 1 frames rejected" in err and err.count("\n") == 1


def test_decode_attributes_only_when_asked(tmp_path):
    capture = tmp_path / "rad8.txt"
    capture.write_bytes(MASIMO)
    _, lines, _ = cli("decode", "--protocol", "masimo", "--attributes", str(capture))
    assert {"kind": "attribute", "name": "serial_number", "value": "0000012345"} in lines


def test_decode_intellivue_capture_starting_mid_frame(tmp_path):
    reply = build_numerics_reply({"hr": 72.0, "spo2": 97.0, "rr": 14.0}, device_time=datetime(2026, 11, 28, 9, 0, 5))
    capture = tmp_path / "mp.bin"
    capture.write_bytes(reply[7:] + reply + b"\x00\x01garbage" + reply)
    status, lines, err = cli("decode", "--protocol", "intellivue", str(capture))
    assert status == 0
    hr = [line for line in lines if line.get("vital") == "hr"]
    assert len(hr) == 2 and hr[0]["value"] == 72.0 and hr[0]["unit"] == "bpm"
    assert hr[0]["device_time"] == "2026-11-28T09:00:05"
    assert "2 frames decoded" in err and "bytes skipped" in err


def test_decode_unknown_protocol_and_unreadable_file(tmp_path):
    status, lines, err = cli("decode", "--protocol", "zoll", str(tmp_path))
    assert status == 2 and lines == [] and "unknown protocol 'zoll'" in err and err.count("\n") == 1
    status, lines, err = cli("decode", "--protocol", "masimo", str(tmp_path / "missing.bin"))
    assert status == 1 and "cannot read" in err and err.count("\n") == 1
    status, _, err = cli("decode", "--protocol", "masimo", str(tmp_path))  # a directory
    assert status == 1 and "cannot read" in err


def test_decode_empty_and_garbage_files_exit_zero(tmp_path):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    assert cli("decode", "--protocol", "masimo", str(empty))[0] == 0
    noise = tmp_path / "noise.bin"
    noise.write_bytes(bytes(range(256)) * 40)
    for protocol in ("masimo", "intellivue"):
        status, lines, err = cli("decode", "--protocol", protocol, str(noise))
        assert status == 0 and "frames decoded" in err


@pytest.mark.slow
def test_decode_from_stdin_as_a_process():
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), "decode", "--protocol", "masimo", "-"],
                            input=MASIMO, capture_output=True, timeout=60)
    assert result.returncode == 0
    first = json.loads(result.stdout.decode().splitlines()[0])
    assert first["vital"] == "spo2" and first["value"] == 98.0
    assert b"frames decoded" in result.stderr


def test_devices_lists_ports_without_failing():
    status, lines, _ = cli("devices", "--json")
    assert status == 0 and all({"device", "description", "hwid", "hint"} <= set(line) for line in lines)


def test_run_refuses_a_bad_device_url():
    out, err = io.StringIO(), io.StringIO()
    status = run_cli(["run", "--device", "/dev/ttyUSB0"], window=lambda args: 0, out=out, err=err)
    assert status == 2 and "say which protocol" in err.getvalue()


def test_decode_nonin_waves_only_when_asked(tmp_path):
    from drivers.nonin import encode_format2_packet

    capture = tmp_path / "xpod.bin"
    capture.write_bytes(b"\x55\xaa" + b"".join(encode_format2_packet(97, 72, [0.2 + 0.02 * i for i in range(25)])
                                               for _ in range(3)))
    status, lines, err = cli("decode", "--protocol", "nonin", str(capture))
    assert status == 0 and not any(line["kind"] == "wave" for line in lines)
    spo2 = [line for line in lines if line.get("vital") == "spo2"]
    assert spo2 and spo2[0]["value"] == 97.0 and spo2[0]["device_time"] is None
    _, lines, _ = cli("decode", "--protocol", "nonin", "--waves", str(capture))
    waves = [line for line in lines if line["kind"] == "wave"]
    assert waves and waves[0]["channel"] == "pleth" and waves[0]["rate"] == 75.0 and len(waves[0]["samples"]) == 25
    assert "bytes skipped" in err
