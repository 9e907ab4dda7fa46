"""A long synthetic session written straight into a store, for export benchmarks and tests.

:func:`build_long_session` makes a closed IV-ketamine session of ``hours`` hours in a few seconds:
1 Hz numerics (HR, PR, SpO2, PI, RR, EtCO2, temperature), NIBP readings (every 5 min in the first
hour, then every 15 min), optionally ECG 250 Hz, pleth 100 Hz and capnogram 25 Hz waveforms,
``events`` charted assessments and events (a tenth of them free-text notes), alarms with
acknowledgements, and a discharge with the closing signature. Charted entries are made by the
session domain (:class:`~monitor.session.SessionState`), so the record replays like a real one;
data goes in through the store's public bulk calls in large chunks. Deterministic for a seed.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np

from drivers.model import NumericObservation, Quality, WaveformChunk, numerics_into
from monitor.patient import Patient, Sex
from monitor.protocols import KetamineIVPlan
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore
from monitor.session.record import STORE_TABLE, EntryBase, entry_kind

__all__ = ["build_long_session", "SYNTHETIC_START"]

#: Default start of a synthetic session.
SYNTHETIC_START = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
_SOURCE = "synthetic"


def _walk(rng: np.random.Generator, n: int, mean: float, sigma: float, tau: float) -> np.ndarray:
    """An Ornstein–Uhlenbeck series around ``mean`` (1 s steps)."""
    noise = rng.normal(0.0, sigma * np.sqrt(2.0 / tau), n)
    out = np.empty(n)
    x = 0.0
    a = 1.0 - 1.0 / tau
    for i in range(n):  # fast enough for 43 200 points (~15 ms)
        x = a * x + noise[i]
        out[i] = x
    return mean + out


def build_long_session(store: SessionStore, hours: float = 12, seed: int = 0, *, waves: bool = True,
                       events: int = 300, start: datetime | None = None) -> int:
    """Write a closed synthetic IV-ketamine session of ``hours`` hours into ``store``; return its id.

    ``waves``: include ECG (250 Hz), pleth (100 Hz) and capnogram (25 Hz). ``events``: how many
    assessments/events to chart. ``hours`` must be at least 2 (dosing, recovery and discharge must
    fit). The patient is "Long Session Patient", MRN LS-0001; the nurse "bench" (Bench Nurse).
    """
    from monitor.session import SessionState

    if hours < 2:
        raise ValueError("a synthetic session lasts at least 2 hours")
    rng = np.random.default_rng(seed)
    t0 = start or SYNTHETIC_START
    total = int(hours * 3600)
    nurse = Actor(username="bench", display_name="Bench Nurse", role=Role.NURSE)
    patient = Patient(display_name="Long Session Patient", mrn="LS-0001", date_of_birth=date(1970, 1, 1),
                      sex=Sex.FEMALE, weight_kg=72)
    plan = KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=72)
    settings = ClinicSettings(clinic_name="Synthetic clinic", clinic_address="1 Test Street")
    sid = store.create_session(patient=patient.to_payload(), protocol="ketamine-iv", plan=plan.to_payload(),
                               device="synthetic://long", user=nurse.username, started_at=t0)
    state = SessionState.open(session_id=f"S-{sid}", patient=patient, plan=plan, t=t0, by=nurse, settings=settings)

    # ------------------------------------------------------------------ numerics
    n = total + 1
    series = {
        "hr": np.clip(_walk(rng, n, 76, 2.0, 20), 45, 140), "spo2": np.clip(_walk(rng, n, 97.5, 0.6, 15), 88, 100),
        "rr": np.clip(_walk(rng, n, 14, 0.8, 30), 8, 28), "etco2": np.clip(_walk(rng, n, 37, 0.8, 30), 28, 48),
        "temp": _walk(rng, n, 36.7, 0.03, 300), "pi": np.clip(_walk(rng, n, 3.0, 0.3, 30), 0.3, 10),
    }
    series["pr"] = series["hr"] + rng.normal(0, 0.6, n)
    rounding = {"hr": 0, "pr": 0, "spo2": 0, "rr": 0, "etco2": 0, "temp": 1, "pi": 2}
    values = {k: np.round(v, rounding[k]).tolist() for k, v in series.items()}
    order = ("hr", "pr", "spo2", "pi", "rr", "etco2", "temp")
    flags = frozenset({Quality.SIMULATED})
    empty: frozenset[Quality] = frozenset()

    # NIBP schedule: a pre-dose reading at 60 s, then every 5 min for an hour, then every 15 min
    nibp_times = [60] + list(range(300, 3600, 300)) + list(range(3600, total - 600, 900)) + [total - 600]
    baseline_sys, baseline_dia = 124.0, 78.0

    def bp_at(s: int) -> tuple[float, float]:
        rise = 14.0 * np.exp(-((s - 2400) / 900.0) ** 2)  # the rise around 40 min
        return (round(baseline_sys + rise + rng.normal(0, 3)), round(baseline_dia + rise * 0.7 + rng.normal(0, 2)))

    nibp = {s: bp_at(s) for s in nibp_times}
    nibp[total - 600] = (baseline_sys + 2, baseline_dia + 1)

    # ------------------------------------------------------------------ charted actions in time order
    actions: list[tuple[float, int, str, Any]] = []
    for s in nibp_times:
        actions.append((s, 0, "nibp", nibp[s]))
    actions.append((120, 1, "start", None))
    actions.append((2520, 1, "stop", None))
    kinds = ("moaas", "pain_nrs", "nausea_a", "nausea_e", "anxiety", "headache", "cadss6", "rass", "dissociation")
    for i, s in enumerate(np.linspace(180, total - 1500, events).astype(int).tolist()):
        kind = "note" if i % 10 == 9 else kinds[i % len(kinds)]
        actions.append((s + 0.5, 2, kind, i))
    actions.append((total - 1200, 3, "aldrete", None))
    actions.append((total - 300, 3, "escort", None))
    actions.sort(key=lambda a: (a[0], a[1]))

    new_entries: list[EntryBase] = list(state.entries)
    for at_s, _, kind, arg in actions:
        t = t0 + timedelta(seconds=at_s)
        if kind == "nibp":
            sys_, dia_ = arg
            new_entries += state.record_nibp(t, sys_, dia_, mean=round((sys_ + 2 * dia_) / 3), source="device")
        elif kind == "start":
            new_entries += state.start_infusion(t, nurse)
        elif kind == "stop":
            new_entries += state.stop_infusion(t, nurse, "planned dose given")
        elif kind == "moaas":
            new_entries += state.chart({"kind": "moaas", "level": 4 if arg % 4 == 0 else 5}, t, nurse)
        elif kind == "pain_nrs":
            new_entries += state.chart({"kind": "pain_nrs", "rating": int(arg % 4)}, t, nurse)
        elif kind == "nausea_a":
            new_entries += state.chart({"kind": "nausea", "nausea": arg % 3 == 0, "vomiting": False}, t, nurse)
        elif kind == "cadss6":
            new_entries += state.chart({"kind": "cadss6", "items": {1: 1, 2: 0, 6: 1, 7: 0, 15: 0, 22: 0}}, t, nurse)
        elif kind == "rass":
            new_entries += state.chart({"kind": "rass", "level": 0}, t, nurse)
        elif kind == "aldrete":
            new_entries += state.chart({"kind": "aldrete", "activity": 2, "respiration": 2, "circulation": 2,
                                        "consciousness": 2, "oxygen_saturation": 2}, t, nurse)
        elif kind == "escort":
            new_entries += state.confirm_escort(t, nurse)
        elif kind == "note":
            new_entries += state.record_event({"kind": "note", "text": f"synthetic note {arg}"}, t, nurse)
        elif kind == "nausea_e":
            new_entries += state.record_event({"kind": "nausea", "severity": "mild"}, t, nurse)
        else:
            new_entries += state.record_event({"kind": kind}, t, nurse)
    end = t0 + timedelta(seconds=total)
    new_entries += state.close(end, nurse, latest_vitals={})

    with store.transaction():
        # numerics, an hour at a time
        for h0 in range(0, n, 3600):
            batch: list[NumericObservation] = []
            for s in range(h0, min(h0 + 3600, n)):
                numerics_into([(k, values[k][s], empty) for k in order], _SOURCE, t0 + timedelta(seconds=s), None,
                              flags, batch)
                if s in nibp:
                    sys_, dia_ = nibp[s]
                    numerics_into([("nibp_sys", float(sys_), empty), ("nibp_dia", float(dia_), empty),
                                   ("nibp_mean", float(round((sys_ + 2 * dia_) / 3)), empty)], _SOURCE,
                                  t0 + timedelta(seconds=s), None, flags, batch)
            store.add_observations(sid, batch)
        for entry in new_entries:
            store.add_entry(sid, STORE_TABLE.get(entry.entry_type, "note"), entry.t, entry_kind(entry),
                            entry.to_payload(), entry.by.username if entry.by else nurse.username)
        baseline = state.baseline
        if baseline is not None:
            store.set_baseline(sid, dict(baseline.values), nurse.username, t0 + timedelta(seconds=120))
        # alarms: one every ~35 min, acknowledged after 20 s
        conditions = (("hr_high", "MEDIUM", 120.0, 124.0), ("spo2_low", "MEDIUM", 91.0, 90.0),
                      ("nibp_high", "LOW", 160.0, 162.0), ("rr_low", "MEDIUM", 10.0, 9.0))
        for i, s in enumerate(range(900, total - 900, 2100)):
            condition, prio, limit, value = conditions[i % len(conditions)]
            at = t0 + timedelta(seconds=s)
            alarm = store.alarm_started(sid, condition=condition, kind="physiological", priority=prio, started_at=at,
                                        limit=limit, value=value, message="synthetic alarm")
            store.alarm_action(sid, alarm_id=alarm, at=at + timedelta(seconds=20), action="acknowledge",
                               user=nurse.username, detail=condition)
            store.alarm_ended(alarm, at + timedelta(seconds=90))

    if waves:
        _write_waves(store, sid, t0, total, series["hr"], series["rr"], rng)
    store.close_session(sid, user=nurse.username, signed_name=nurse.display_name, meaning="reviewed and closed", at=end)
    return sid


def _write_waves(store: SessionStore, sid: int, t0: datetime, total: int, hr: np.ndarray, rr: np.ndarray,
                 rng: np.random.Generator) -> None:
    chunk_s = 60
    for c0 in range(0, total, chunk_s):
        length = min(chunk_s, total - c0)
        start = t0 + timedelta(seconds=c0)
        chunks = []
        for channel, rate in (("ecg", 250.0), ("pleth", 100.0), ("co2", 25.0)):
            times = c0 + np.arange(int(length * rate)) / rate
            if channel == "co2":
                phase = np.cumsum(np.interp(times, np.arange(len(rr)), rr) / 60.0 / rate) % 1.0
                samples = np.where(phase < 0.45, 2.0, 38.0 - 4.0 * np.abs(phase - 0.75))
            else:
                phase = np.cumsum(np.interp(times, np.arange(len(hr)), hr) / 60.0 / rate) % 1.0
                if channel == "ecg":
                    samples = (1.1 * np.exp(-((phase - 0.3) / 0.012) ** 2) - 0.15 * np.exp(-((phase - 0.27) / 0.01) ** 2)
                               + 0.25 * np.exp(-((phase - 0.55) / 0.05) ** 2))
                else:
                    samples = np.exp(-((phase - 0.3) / 0.12) ** 2) + 0.3 * np.exp(-((phase - 0.6) / 0.1) ** 2)
            samples = samples + rng.normal(0, 0.01, len(samples))
            chunks.append(WaveformChunk(channel=channel, rate=rate, start_time=start, samples=samples.astype(np.float32),
                                        source=_SOURCE))
        store.add_waveforms(sid, chunks)
