"""The monitor's side of HL7 v2 / MLLP, for ``vigil simulate --protocol hl7``: ORU^R01 messages of
the simulated patient, the way three kinds of sender write them.

Variants:

* ``pcd01`` — an IHE PCD-01 device (v2.6, enhanced mode MSH-15 ``AL`` / MSH-16 ``NE``): MDC codes
  and units, OBX-4 containment ids, OBX-11 ``R``, OBX-14 in UTC, and ECG II (250 Hz) and pleth
  (100 Hz) as NA waveforms with their sample period (``MDC_ATTR_TIME_PD_SAMP``) in a child OBX.
* ``loinc`` — a gateway writing LOINC and UCUM (v2.5.1, original mode), OBX-11 ``F``, OBX-14 with
  a −05:00 offset.
* ``local`` — a vendor's own codes (system ``99VGLSIM``, the entries of the shipped
  ``hl7_local_codes.json``) and units (EtCO2 in kPa, temperature in °F), v2.3.1, times only in
  MSH-7 and OBR-7 without an offset, OBX-8 ``L``/``H`` when SpO2 < 90 % or HR > 120, and the pleth
  as an MA waveform.

Every message carries PID-3 ``patient_id`` and PV1-3 ``CHAIRS^1^bed``. A probe off sends SpO2 and
pulse rate with no value and OBX-11 ``X``; NIBP is sent with the last reading once there is one.
:meth:`Hl7Emulator.receive` reads Vigil's acknowledgements and counts them (:attr:`acks`,
:attr:`refusals`).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from datetime import timedelta, timezone
from typing import ClassVar

import numpy as np

from drivers.catalogue import CATALOGUE
from drivers.emulation import DeviceEmulator, DeviceSnapshot
from drivers.hl7 import message as hl7
from drivers.hl7.mllp import Unframer, frame

#: The variants the emulator writes (first = default).
HL7_VARIANTS: tuple[str, ...] = ("pcd01", "loinc", "local")
PCD01_PROFILE = "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO"
LOCAL_SYSTEM = "99VGLSIM"
_VITALS = ("hr", "pr", "spo2", "rr", "etco2", "temp")
_LOCAL_CODES = {"hr": "HR", "pr": "PR", "spo2": "SPO2", "rr": "RR", "etco2": "ETCO2", "temp": "TEMP",
                "nibp_sys": "NIBP-S", "nibp_dia": "NIBP-D", "nibp_mean": "NIBP-M"}
_LOCAL_UNITS = {"hr": "bpm", "pr": "bpm", "spo2": "%", "rr": "rpm", "etco2": "kPa", "temp": "deg F",
                "nibp_sys": "mm Hg", "nibp_dia": "mm Hg", "nibp_mean": "mm Hg"}
_OFFSET = timezone(timedelta(hours=-5))
_WAVES = {"ecg": ("131330^MDC_ECG_ELEC_POTL_II^MDC", "266418^MDC_DIM_MILLI_VOLT^MDC", 3),
          "pleth": ("150452^MDC_PULS_OXIM_PLETH^MDC", "262656^MDC_DIM_DIMLESS^MDC", 4)}


def _number(value: float, decimals: int) -> str:
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


class Hl7Emulator(DeviceEmulator):
    """An HL7 sender: one ORU^R01 of numerics every ``interval`` simulated seconds (and, for
    ``pcd01`` and ``local``, one of waveforms every second). ValueError for an unknown variant."""

    protocol: ClassVar[str] = "hl7"

    def __init__(self, variant: str = "pcd01", *, bed: str = "1", patient_id: str = "SIM-0001",
                 interval: float = 1.0, waves: bool = True) -> None:
        if variant not in HL7_VARIANTS:
            raise ValueError(f"hl7 variant must be one of: {', '.join(HL7_VARIANTS)}")
        if not 0.1 <= interval <= 3600:
            raise ValueError("interval must be between 0.1 and 3600 seconds")
        self.variant = variant
        self.bed = bed
        self.patient_id = patient_id
        self.interval = interval
        self.waves = waves and variant != "loinc"
        self.sent = 0
        self.acks: Counter[str] = Counter()
        self.refusals: deque[str] = deque(maxlen=20)
        self._unframer = Unframer()
        self._clock = 0.0
        self._next = 0.0
        self._next_wave = 1.0
        self._pending: dict[str, list[np.ndarray]] = {"pleth": []} if variant == "local" else {"ecg": [], "pleth": []}
        self._rates: dict[str, float] = {"ecg": 250.0, "pleth": 100.0}

    # -- host → device
    def receive(self, data: bytes) -> bytes:
        """Count the acknowledgements in ``data`` (MSA-1) and keep the reasons of refusals. Never
        raises; the device answers nothing."""
        for payload in self._unframer.feed(data):
            message = hl7.parse(hl7.decode_text(payload))
            if message is None:
                continue
            code = message.get("MSA", 1).upper()
            self.acks[code] += 1
            if code not in ("AA", "CA"):
                self.refusals.append(f"{code}: {message.get('MSA', 3) or message.get('ERR', 3)}")
        return b""

    # -- device → host
    def produce(self, snapshot: DeviceSnapshot) -> bytes:
        """The messages due during ``snapshot.elapsed`` simulated seconds, MLLP-framed."""
        elapsed = float(snapshot.elapsed)
        self._clock += elapsed if elapsed > 0 and math.isfinite(elapsed) else 0.0
        if self.waves:
            for channel in self._pending:
                wave = snapshot.waves.get(channel)
                if wave is not None and len(wave):
                    self._pending[channel].append(np.asarray(wave, np.float64))
                    self._rates[channel] = float(snapshot.wave_rates.get(channel, self._rates[channel]))
        out = bytearray()
        if self._clock + 1e-9 >= self._next:
            out += frame(self.numerics_message(snapshot))
            self._next = self._clock + self.interval
        if self.waves and self._clock + 1e-9 >= self._next_wave:
            message = self.waves_message(snapshot)
            if message:
                out += frame(message)
            self._next_wave = self._clock + 1.0
        return bytes(out)

    # -- messages
    def _control(self) -> str:
        self.sent += 1
        return f"SIM{self.sent}"

    def _time(self, snapshot: DeviceSnapshot) -> str:
        if self.variant == "pcd01":
            return hl7.format_time(snapshot.time)
        if self.variant == "loinc":
            return snapshot.time.astimezone(_OFFSET).strftime("%Y%m%d%H%M%S%z")
        return snapshot.device_time.strftime("%Y%m%d%H%M%S")

    def _header(self, snapshot: DeviceSnapshot) -> list[str]:
        when = self._time(snapshot)
        if self.variant == "pcd01":
            msh = ["MSH", "^~\\&", "SIM_MONITOR^0009FB0000000001^EUI-64", "SIMCLINIC", "VIGIL", "VIGIL", when, "",
                   "ORU^R01^ORU_R01", self._control(), "P", "2.6", "", "", "AL", "NE", "", "UNICODE UTF-8", "", "",
                   PCD01_PROFILE]
        elif self.variant == "loinc":
            msh = ["MSH", "^~\\&", "SIM_GATEWAY", "SIMCLINIC", "VIGIL", "VIGIL", when, "", "ORU^R01^ORU_R01",
                   self._control(), "P", "2.5.1"]
        else:
            msh = ["MSH", "^~\\&", "SIMMON", "SIMCLINIC", "VIGIL", "VIGIL", when, "", "ORU^R01",
                   self._control(), "P", "2.3.1"]
        return ["|".join(msh),
                f"PID|||{hl7.escape(self.patient_id)}^^^SIMCLINIC^MR||Simulated^Patient",
                f"PV1||O|CHAIRS^1^{hl7.escape(self.bed)}",
                f"OBR|1|||182777000^monitoring of patient^SCT|||{when}"]

    def _obx(self, index: int, vital: str, value: float | None, status: str, when: str, flags: str = "") -> str:
        spec = CATALOGUE[vital]
        text = "" if value is None else _number(value, spec.decimals)
        if self.variant == "pcd01":
            code = f"{spec.mdc_code}^{spec.mdc_ref}^MDC"
            unit = f"{spec.mdc_unit_code}^{spec.mdc_unit}^MDC"
            sub = f"1.1.1.{index}"
            fields = ["OBX", str(index), "NM", code, sub, text, unit, "", flags, "", "", status, "", "", when]
        elif self.variant == "loinc":
            code = f"{spec.loinc[0]}^{spec.label}^LN"
            unit = f"{spec.ucum}^{spec.ucum}^UCUM"
            fields = ["OBX", str(index), "NM", code, "", text, unit, "", flags, "", "", status, "", "", when]
        else:
            if value is not None and vital == "etco2":
                text = _number(value / 7.50062, 2)
            elif value is not None and vital == "temp":
                text = _number(value * 9 / 5 + 32, 1)
            code = f"{_LOCAL_CODES[vital]}^{spec.label}^{LOCAL_SYSTEM}"
            fields = ["OBX", str(index), "NM", code, "", text, _LOCAL_UNITS[vital], "", flags, "", "", status]
        return "|".join(fields)

    def numerics_message(self, snapshot: DeviceSnapshot) -> bytes:
        """One ORU^R01 with the snapshot's numerics (and the last NIBP reading), unframed."""
        segments = self._header(snapshot)
        when = self._time(snapshot) if self.variant != "local" else ""
        probe_off = bool(snapshot.conditions & {"sensor_off", "no_sensor"})
        values = snapshot.values
        index = 0
        for vital in _VITALS:
            value = values.get(vital)
            if probe_off and vital in ("spo2", "pr"):
                value = None
            flags = ""
            if self.variant == "local" and value is not None:
                flags = "L" if vital == "spo2" and value < 90 else ("H" if vital == "hr" and value > 120 else "")
            index += 1
            segments.append(self._obx(index, vital, value, "X" if value is None else self._status(), when, flags))
        if snapshot.nibp_time is not None and values.get("nibp_sys") is not None:
            nibp_when = "" if self.variant == "local" else (
                hl7.format_time(snapshot.nibp_time) if self.variant == "pcd01"
                else snapshot.nibp_time.astimezone(_OFFSET).strftime("%Y%m%d%H%M%S%z"))
            for vital in ("nibp_sys", "nibp_dia", "nibp_mean"):
                index += 1
                segments.append(self._obx(index, vital, values.get(vital), self._status(), nibp_when))
        return ("\r".join(segments) + "\r").encode("utf-8")

    def _status(self) -> str:
        return "R" if self.variant == "pcd01" else "F"

    def waves_message(self, snapshot: DeviceSnapshot) -> bytes:
        """One ORU^R01 with the waveform samples accumulated since the last one (b"" if none)."""
        chunks = {channel: np.concatenate(parts) for channel, parts in self._pending.items() if parts}
        for parts in self._pending.values():
            parts.clear()
        if not chunks:
            return b""
        segments = self._header(snapshot)
        index = 0
        for number, (channel, samples) in enumerate(chunks.items(), start=2):
            code, unit, decimals = _WAVES[channel]
            texts = ["" if math.isnan(v) else _number(float(v), decimals) for v in samples]
            index += 1
            if self.variant == "pcd01":
                sub = f"1.{number}.1.1"
                segments.append(f"OBX|{index}|NA|{code}|{sub}|{'^'.join(texts)}|{unit}|||||R")
                index += 1
                period = _number(1000.0 / self._rates[channel], 3)
                segments.append(f"OBX|{index}|NM|67981^MDC_ATTR_TIME_PD_SAMP^MDC|{sub}.1|{period}|"
                                f"264338^MDC_DIM_MILLI_SEC^MDC|||||R")
            elif channel == "pleth":
                segments.append(f"OBX|{index}|MA|PLETH^Pleth^{LOCAL_SYSTEM}||{'~'.join(texts)}||||||F")
        return ("\r".join(segments) + "\r").encode("utf-8")
