"""Exports are byte-identical to what the whole-session writers produced before they streamed
(issue 10 §8): a golden digest per format and option, on a closed two-hour session with waveforms
and on an open session with a recording gap and unfinished waveform blocks. The digests were
taken with the writers that held whole sessions in memory (commit 1f021e3); the PDF is compared
by the text of its pages."""

from __future__ import annotations

import hashlib
import io
import json
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from drivers.model import WaveformChunk, numeric
from monitor.export import FORMATS, export_session
from monitor.export.synthetic import build_long_session
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.session import SessionState
from monitor.session.record import STORE_TABLE, entry_kind
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore

pytestmark = pytest.mark.slow  # builds and exports two sessions in every format

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
OPTIONS = [("csv", {}), ("csv", {"interval_s": 10}), ("pdf", {}), ("fhir", {}), ("fhir", {"interval_s": 10}),
           ("hl7", {}), ("hl7", {"interval_s": 10}), ("edf", {}), ("edf", {"edf_gaps": "drop"}), ("json", {})]
GOLDEN = {
    "closed csv": "7b2b2a9dccb0587b3096564d0e0a191ce9ab4c74965baf2efa74030c88a20da7",
    "closed csv interval_s=10": "b2c97457c73725887b4cd89826f5d8f11d8c45f79d685f81632058747073ab74",
    "closed pdf": "fef1d3f892d6eca306880636d77c67fdc675711d7c8b1927976d087f199593f1",
    "closed fhir": "a68a81d09b6534b54b407263d64a758cea6648605353da322a51731efe210f2d",
    "closed fhir interval_s=10": "53c47f1edda9914e45c7b95ea7efdd7a46b2009654e07371b14d5f12aa54b153",
    "closed hl7": "8af89719cce0b23c0d475943dd168cd1785e42d5ceabee5f98cfcff713f96a17",
    "closed hl7 interval_s=10": "032de121eaac17532eac38d874223e42e335214a776a4e5056dcd11d57942e62",
    "closed edf": "44078930f88d3e3c7ecfc0152ccce74f5cade2a53a450fe334fc2df93b2a4862",
    "closed edf edf_gaps=drop": "44078930f88d3e3c7ecfc0152ccce74f5cade2a53a450fe334fc2df93b2a4862",
    "closed json": "b3f0b1dfc48a4c7328c76703bdcbd8b3e704cb13c4cf24b096b3a90e946c2bfe",
    "open csv": "e81c2aa856fb46af3abc4acf119ff2ba2062510f8d54bc81abf8e53d34ba9534",
    "open csv interval_s=10": "e0c806e9992bb73070502f3ab250200a312508eea4a7d8d6203acc8184da04a3",
    "open pdf": "28c80d1797580527295a6dca50564c49546bf0a939e465792aff48e860ee9aa7",
    "open fhir": "fe09d8f778ed534e8d10780372db0127a951bb01d246248f10b4df7291317ea9",
    "open fhir interval_s=10": "89b095ca7809618d8d098bf6b008ba4cede842a09e5ee729b79d3ced6749fd83",
    "open hl7": "971e1ca0763585b9581c6a3a422222b3dc9eb3112b9ab699d7a41542d3363ec7",
    "open hl7 interval_s=10": "c7ec42e087b241c27ec1e91da625440f88907385e029ce5d51ef29878dc81a11",
    "open edf": "d0bc10b44ddb57b520fb69692bca789204ba78bfbfd201a37da14249f6de837b",
    "open edf edf_gaps=drop": "4ca23a7e9b2744414b2e0551cfd4114fc358b5d35a038763775b3e76216526c0",
    "open json": "1b1292cf8eab276b852f76ad09ce6e625be94984e1672cada69fb656c146a7ca",
}


def open_session_with_a_gap(store: SessionStore) -> int:
    """An open session: 100 s of numerics and ECG/pleth, nothing from 40 to 55 s (a recorded gap),
    the last seconds of each channel in an unfinished block."""
    nurse = Actor(username="ann", display_name="Ann Nurse", role=Role.NURSE)
    patient = Patient(display_name="Open Patient", mrn="OP-1", weight_kg=70)
    plan = KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70)
    sid = store.create_session(patient=patient.to_payload(), protocol="ketamine-iv", plan=plan.to_payload(),
                               device="sim://?scenario=normal", user=nurse.username, started_at=T0)
    state = SessionState.open(session_id=f"S-{sid}", patient=patient, plan=plan, t=T0, by=nurse,
                              settings=ClinicSettings())
    entries = list(state.entries) + state.waive_pre_dose_check(T0 + timedelta(seconds=5), nurse, "golden")
    entries += state.start_infusion(T0 + timedelta(seconds=10), nurse)
    for entry in entries:
        store.add_entry(sid, STORE_TABLE.get(entry.entry_type, "note"), entry.t, entry_kind(entry),
                        entry.to_payload(), nurse.username)
    rng = np.random.default_rng(5)
    for s in [s for s in range(100) if not 40 <= s < 55]:
        t = T0 + timedelta(seconds=s)
        store.add_observations(sid, [numeric("hr", 70 + s % 7, "sim", t), numeric("spo2", 97, "sim", t)])
        store.add_waveforms(sid, [
            WaveformChunk(channel="ecg", rate=250, start_time=t, samples=rng.normal(0, 1, 250).astype(np.float32),
                          source="sim"),
            WaveformChunk(channel="pleth", rate=100, start_time=t, samples=rng.normal(0, 1, 100).astype(np.float32),
                          source="sim")])
    store.add_gap(sid, T0 + timedelta(seconds=40), T0 + timedelta(seconds=55), "crash")
    return sid


def digest(data: bytes, fmt: str) -> str:
    if fmt == "pdf":  # Qt's PDF bytes differ from one process to the next (font order, document id,
        # creation date): the digest is of every page's text
        import pypdf
        data = "\f".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(data)).pages).encode()
    return hashlib.sha256(data).hexdigest()


def exports(tmp_path, options=OPTIONS) -> dict[str, str]:
    out = {}
    clock = lambda: datetime(2026, 3, 3, 9, tzinfo=timezone.utc)  # noqa: E731 (fixed creation and audit times)
    with SessionStore(tmp_path / "golden.sqlite", clock=clock, block_seconds=30) as store:
        sessions = {"closed": build_long_session(store, hours=2, seed=3, events=40),
                    "open": open_session_with_a_gap(store)}
        for name, sid in sessions.items():
            for fmt, kwargs in options:
                key = f"{name} {fmt}" + "".join(f" {k}={v}" for k, v in kwargs.items())
                path = export_session(store, sid, fmt, tmp_path / f"{len(out)}{FORMATS[fmt].suffix}", **kwargs)
                out[key] = digest(path.read_bytes(), fmt)
    return out


def test_every_export_is_byte_identical_to_the_whole_session_writers(tmp_path, qapp):  # qapp: widgets may follow
    got = exports(tmp_path)
    if os.environ.get("VIGIL_GOLDEN_OUT"):  # to re-take the digests after a deliberate change of a format
        Path(os.environ["VIGIL_GOLDEN_OUT"]).write_text(json.dumps(got, indent=4))
    assert got == GOLDEN


def test_the_pieces_streamed_do_not_change_the_bytes(tmp_path, monkeypatch, qapp):
    """Small pieces: waveform blocks that straddle the EDF's chunks of records, observation rows
    over many chunks."""
    from monitor.app import readmodel
    from monitor.export import edf
    monkeypatch.setattr(edf, "CHUNK_RECORDS", 7)
    monkeypatch.setattr(readmodel, "OBSERVATION_CHUNK", 999)
    streamed = [(f, o) for f, o in OPTIONS if f in ("csv", "edf", "json")]
    got = exports(tmp_path, streamed)
    assert got == {k: v for k, v in GOLDEN.items() if k in got} and len(got) == 2 * len(streamed)
