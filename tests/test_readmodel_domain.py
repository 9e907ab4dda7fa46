"""The read model asks the replayed session for dose, dosing span and phases (issue 10 §2), and the
replay takes what the store legitimately holds: late entries, store amendments, a resumed session;
a record damaged part-way replays up to the damage."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from monitor.app.readmodel import load_session
from monitor.app.review import add_late_entry
from monitor.patient import Patient
from monitor.protocols import KetamineIVPlan
from monitor.session import SessionState
from monitor.session.record import STORE_TABLE, entry_kind
from monitor.settings import ClinicSettings
from monitor.staff import Actor, Role
from monitor.store import SessionStore

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=timezone.utc)
NURSE = Actor(username="ann", display_name="Ann Nurse", role=Role.NURSE)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def record(store: SessionStore, *, close: str | None = None, damage_after: int | None = None) -> tuple[int, SessionState]:
    """A ketamine session: start at 50 mg/h, rate change, pause, resume, then stop unless it stays open
    (``close=None``); ``damage_after``: the entry after that many is stored damaged."""
    plan = KetamineIVPlan(dose_mg_per_kg=0.5, weight_kg=70)
    patient = Patient(display_name="Dose Patient", weight_kg=70)
    sid = store.create_session(patient=patient.to_payload(), protocol="ketamine-iv", plan=plan.to_payload(),
                               device="sim", user=NURSE.username, started_at=T0)
    state = SessionState.open(session_id=f"S-{sid}", patient=patient, plan=plan, t=T0, by=NURSE,
                              settings=ClinicSettings())
    state.waive_pre_dose_check(at(1), NURSE, "test")
    state.start_infusion(at(2), NURSE, 50.0)
    state.change_rate(at(10), NURSE, 40.0, "nausea")
    state.pause_infusion(at(15), NURSE, "BP")
    state.resume_infusion(at(20), NURSE)
    if close is not None:
        state.stop_infusion(at(40), NURSE)
    for i, entry in enumerate(state.entries, start=1):
        payload = entry.to_payload()
        if damage_after is not None and i == damage_after + 1:
            payload = {**payload, "action": "explode"}
        store.add_entry(sid, STORE_TABLE.get(entry.entry_type, "note"), entry.t, entry_kind(entry), payload,
                        NURSE.username)
    if close is not None:
        store.close_session(sid, user=NURSE.username, signed_name=NURSE.display_name, meaning="closed",
                            at=at(90), status=close)
    return sid, state


def test_dose_span_and_phases_are_the_replayed_sessions(tmp_path):
    with SessionStore(tmp_path / "v.sqlite") as store:
        sid, state = record(store, close="closed")
        add_late_entry(store, sid, {"kind": "note", "text": "charted late"}, at(50), NURSE, "forgot")
        first = store.entries(sid)[3]
        store.add_entry(sid, first.table_kind, first.t, first.kind, first.payload, NURSE.username, amends=first.id,
                        reason="typo")
        view = load_session(store, sid)
    assert view.replay_error is None
    assert view.delivered_mg == pytest.approx(state.infusion.delivered_mg(at(90)))
    assert [r.delivered_mg for r in view.infusion] == pytest.approx(
        [state.infusion.delivered_mg(s.t) for s in state.infusion.steps])
    assert (view.dosing_start, view.dosing_end) == (state.dosing_started_at, state.dosing_ended_at)
    assert [(ph.key, ph.start, ph.end) for ph in view.phases] == [
        ("baseline", T0, at(2)), ("dosing", at(2), at(40)), ("recovery", at(40), at(90))]
    assert any(e.late for e in view.events)


def test_an_open_session_with_the_infusion_running_counts_until_its_last_data(tmp_path):
    with SessionStore(tmp_path / "v.sqlite") as store:
        sid, state = record(store, close=None)
        view = load_session(store, sid)
        end = store.last_data_time(sid)
    assert view.delivered_mg == pytest.approx(state.infusion.delivered_mg(end))


def test_a_record_damaged_part_way_replays_up_to_the_damage(tmp_path):
    with SessionStore(tmp_path / "v.sqlite") as store:
        sid, state = record(store, close="closed", damage_after=4)  # the pause is damaged
        view = load_session(store, sid)
    assert view.replay_error and "explode" in view.replay_error
    assert [r.action for r in view.infusion] == ["start", "rate_change"]
    assert view.dosing_start == at(2) and view.dosing_end is None
    assert view.delivered_mg == pytest.approx(50 * 8 / 60 + 40 * 80 / 60)  # running until the end, as recorded


def test_a_resumed_session_replays_as_one(tmp_path):
    with SessionStore(tmp_path / "v.sqlite") as store:
        sid, state = record(store, close=None)
        store.add_gap(sid, at(41), at(45), "crash")  # the chair restarted and resumed
        entries = state.stop_infusion(at(50), NURSE)
        for entry in entries:
            store.add_entry(sid, STORE_TABLE.get(entry.entry_type, "note"), entry.t, entry_kind(entry),
                            entry.to_payload(), NURSE.username)
        view = load_session(store, sid)
    assert view.replay_error is None and view.dosing_end == at(50) and len(view.gaps) == 1
    assert [ph.key for ph in view.phases] == ["baseline", "dosing", "recovery"]
