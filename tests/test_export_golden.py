"""Exports are byte-identical to what the whole-session writers produced before they streamed
(issue 10 §8): a golden digest per format and option, on a closed two-hour session with waveforms
and on an open session with a recording gap and unfinished waveform blocks. The digests were
taken with the writers that held whole sessions in memory (commit 1f021e3) and re-taken once
when the content of every export changed on purpose (the record's verification line, the alarm
profile in force, human labels, the clinic's PIN length in the recorded settings — each difference
read against the exports of 99cc161, nothing else changed); the PDF is compared by the text of
its pages."""

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
    "closed csv": "fc17339d99cfcde6cf8d3733604fa1ada3102df72d9d814b0baf024e5e2bdf03",
    "closed csv interval_s=10": "c4aeaced60f4a04ad3207b73015d170fae0b137a454e6f8ede097fa4b80ec4b7",
    "closed pdf": "0c39d5b8dd32247a59701cb8bd2d2565b227fb25eb45f24db1d291475639de14",
    "closed fhir": "a68a81d09b6534b54b407263d64a758cea6648605353da322a51731efe210f2d",
    "closed fhir interval_s=10": "53c47f1edda9914e45c7b95ea7efdd7a46b2009654e07371b14d5f12aa54b153",
    "closed hl7": "73d0c7e9fc8dd679e6f1d344cf382f24f58d162e282b89778ea7dd2ae4313d46",
    "closed hl7 interval_s=10": "1d274cc97bc83395796bc84b87e5ecfc8b6ea5343fb9f13f0c2f9f9d719f3731",
    "closed edf": "a0545afbe1eb74c85a475085e29feea53fadbaf39a26480f5b083794ca538a93",
    "closed edf edf_gaps=drop": "a0545afbe1eb74c85a475085e29feea53fadbaf39a26480f5b083794ca538a93",
    "closed json": "34ae1618a61b5a6f727bd173ea7b82807a0068c39104453d24d6775c8fc39f99",
    "open csv": "41360143230bbad96b3a0f663ec7084e08c66058efc8cff0ab8c1e7ab1606755",
    "open csv interval_s=10": "f21f8c5187c1d2a6a347e03f47c81e1d6ef7c1263f34016d915c7f2686860b54",
    "open pdf": "3a6669f9eb554e31ee04375a48c831c923092d713f648a24af91aa88e3372b15",
    "open fhir": "fe09d8f778ed534e8d10780372db0127a951bb01d246248f10b4df7291317ea9",
    "open fhir interval_s=10": "89b095ca7809618d8d098bf6b008ba4cede842a09e5ee729b79d3ced6749fd83",
    "open hl7": "360def614e71c7ce2bfc9a05370f094163c2c1fb0437cc23dffebc1e56f71efc",
    "open hl7 interval_s=10": "1a1060301980f527c63ab518dfd0e55044f60c0f9bdba32f5b98cea96a970c11",
    "open edf": "56636a81a70ed220b58b495307f0fb56699f38430d57c0f7158a21394c9336ad",
    "open edf edf_gaps=drop": "3bced51dc8503b57e8db679f17216abba3c81abee598fc5d57ec7c1ddc2fc512",
    "open json": "f85ce2d3f3d8aaf59175c8fa99bcace78b8a4e04d4fdb4c245d1d525eebe1c97",
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
