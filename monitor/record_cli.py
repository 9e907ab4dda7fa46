"""``vigil record`` and ``vigil sessions``: recording and listing sessions without a window.

``vigil record`` opens a session, starts the infusion at once (the pre-dose check is waived and
recorded as such; the baseline is taken from the first minute), records for ``--duration``
seconds of device time and prints one JSON line per alarm start and end::

    {"event": "alarm_started", "condition": "spo2_low", "priority": "HIGH", "value": 85.0, "limit": 88.0, "t": "…"}

(``alarm_escalated`` likewise when an alarm rises to a higher priority, e.g. SpO2 falling below
88 % while its MEDIUM alarm is on), then ``{"event": "session_closed", "session": ID}``. Ctrl-C or SIGTERM stop it cleanly (the
session is closed with what was recorded). A SIGKILL leaves the session open: ``--resume``
carries on recording into it after a gap.
"""

from __future__ import annotations

import argparse
import json
import queue
import signal
import threading
from datetime import datetime, timedelta
from typing import IO, Any

from pydantic import ValidationError

from drivers.acquisition import AcquisitionWorker
from drivers.transport import DeviceUrlError, open_link, parse_device_url
from monitor.alarms.engine import AlarmEvent
from monitor.clinic.link import start_clinic_link
from monitor.cli import CliError
from monitor.config import db_path, load_clinic_profile, load_clinic_settings, open_reader
from monitor.patient import Patient
from monitor.protocols import EsketaminePlan, KetamineIVPlan
from monitor.recording import SessionRecorder
from monitor.staff import Actor, RefusedAction, Role, nurse_message
from monitor.store import SessionStore, SessionSummary, StoreError, StoreWriter
from monitor.store.reader import ChairSessionSummary, StoreReader

RECORDER = Actor(username="vigil-record", display_name="vigil record (unattended)", role=Role.NURSE)
CLOSE_MEANING = "recording ended by vigil record (unattended; not clinically reviewed)"
_PRINTED = {"started", "escalated", "ended"}


class _Queue:
    """AcquisitionListener that hands batches to the main thread."""

    def __init__(self) -> None:
        self.batches: queue.SimpleQueue[list] = queue.SimpleQueue()
        self.first: list | None = None  # the batch that marked the start

    def items_received(self, items: list) -> None:
        self.batches.put(items)

    def link_changed(self, *args: Any) -> None:
        pass


def _number(text: str, what: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CliError(f"vigil record: {what} must be a number, not {text!r}") from None
    if not low <= value <= high:
        raise CliError(f"vigil record: {what} {value:g} is outside {low:g}-{high:g}")
    return value


def _plan(args: argparse.Namespace, weight: float, settings) -> KetamineIVPlan | EsketaminePlan:
    if args.protocol == "ketamine-iv":
        dose = None if args.dose is None else _number(args.dose, "dose (mg/kg)", 0.0, 100.0)
        return KetamineIVPlan.for_clinic(settings, weight_kg=weight, dose_mg_per_kg=dose)
    if args.protocol == "esketamine":
        dose = 56 if args.dose is None else int(_number(args.dose, "dose (mg)", 0, 1000))
        return EsketaminePlan.for_clinic(settings, dose_mg=dose, lot_number=args.lot)
    raise CliError(f"vigil record: protocol must be ketamine-iv or esketamine, not {args.protocol!r}")


def cmd_record(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """Record a session with no window (see the module docstring)."""
    duration = _number(args.duration, "duration (seconds)", 1, 7 * 86400)
    weight = _number(args.weight, "weight (kg)", 0, 1000)
    try:
        spec = parse_device_url(args.device)
        settings = load_clinic_settings()
        profile = load_clinic_profile()
        patient = Patient(display_name=args.patient, weight_kg=weight)
        plan = _plan(args, weight, settings)
    except (DeviceUrlError, RefusedAction, ValidationError, ValueError) as exc:
        raise CliError(f"vigil record: {nurse_message(exc) if not isinstance(exc, DeviceUrlError) else exc}") from None
    try:
        store = SessionStore(db_path(args.db))
    except (StoreError, OSError) as exc:
        raise CliError(f"vigil record: {exc}", status=1) from None

    def say(record: dict[str, Any]) -> None:
        out.write(json.dumps(record) + "\n")
        out.flush()

    def on_alarm(event: AlarmEvent) -> None:
        if event.event in _PRINTED:
            say(event.as_record())

    try:  # pipeline: replaced when monitor.app.pipeline lands
        clinic = start_clinic_link(store, settings, url=args.clinic_db, chair=args.chair)
    except (ValueError, StoreError) as exc:
        store.close()
        raise CliError(f"vigil record: {exc}") from None
    writer = StoreWriter(store, on_error=lambda exc: err.write(f"vigil record: recording failed, retrying: {exc}\n"))
    writer.start()
    link = open_link(spec)
    listener = _Queue()
    stop = threading.Event()
    previous = _install_signals(stop)
    recorder: SessionRecorder | None = None
    worker = AcquisitionWorker(link, [listener])
    try:
        worker.start()
        start = _first_time(listener, link, stop)
        recorder = _open(args, store, writer, patient, plan, spec.url, start, settings, profile, on_alarm, err)
        t0 = recorder.now or start
        baseline_due = t0 + timedelta(seconds=60) if recorder.state.pre_dose_waiver and recorder.state.baseline is None else None
        devices_due = _device_schedule(recorder, t0)
        end = t0 + timedelta(seconds=duration)
        pending = listener.first
        while not stop.is_set():
            try:
                batch = pending or listener.batches.get(timeout=0.2)
                pending = None
                recorder.on_items(recorder.rebase(batch))
            except queue.Empty:
                pass
            now = max(link.clock() + recorder.time_offset, recorder.now or start)
            recorder.tick(now)
            if baseline_due is not None and now >= baseline_due:
                baseline_due = None
                recorder.act("record_baseline_from_start", now, RECORDER)
            while devices_due and now >= devices_due[0]:
                recorder.act("log_nasal_device", devices_due.pop(0), RECORDER)
            if now >= end:
                break
        while not listener.batches.empty():
            recorder.on_items(recorder.rebase(listener.batches.get_nowait()))
        end_time = max(link.clock() + recorder.time_offset, recorder.now or start)
        _stop_dosing(recorder, end_time)
    finally:
        worker.stop(1.0)
        _restore_signals(previous)
        if recorder is not None:
            end_time = max(link.clock() + recorder.time_offset, recorder.now or start)
            recorder.finish(end_time, signed_name=RECORDER.display_name, meaning=CLOSE_MEANING)
        writer.stop(30)
        if clinic is not None:  # pipeline: replaced when monitor.app.pipeline lands
            clinic.finish()
        store.close()
    say({"event": "session_closed", "session": recorder.session_id})
    return 0


def _first_time(listener: _Queue, link, stop: threading.Event) -> datetime:
    """The device time base at the start: the first batch's clock, waiting up to 10 s for it."""
    try:
        batch = listener.batches.get(timeout=10)
        listener.first = batch
    except queue.Empty:
        if stop.is_set():
            raise CliError("vigil record: stopped before the device sent anything", status=1) from None
        raise CliError("vigil record: no data from the device within 10 s", status=1) from None
    return link.clock()


def _open(args, store, writer, patient, plan, device, start, settings, profile, on_alarm, err) -> SessionRecorder:
    if args.resume:
        open_ = store.open_sessions()
        if open_:
            record = open_[-1]
            err.write(f"vigil record: resuming session {record.id} (left open at "
                      f"{store.last_data_time(record.id) or record.started_at:%Y-%m-%d %H:%M:%S} UTC)\n")
            return SessionRecorder.resume(store, writer, record.id, actor=RECORDER, now=start, settings=settings,
                                          profile=profile, on_alarm_event=on_alarm)
        err.write("vigil record: no open session to resume; starting a new one\n")
    else:
        for record in store.open_sessions():
            err.write(f"vigil record: session {record.id} was left open (use --resume to carry it on)\n")
    try:
        recorder = SessionRecorder.start(store, writer, patient=patient, plan=plan, device=device, actor=RECORDER,
                                         t=start, settings=settings, profile=profile, on_alarm_event=on_alarm)
        recorder.act("waive_pre_dose_check", start, RECORDER, "unattended recording (vigil record): "
                     "the baseline is taken from the first minute")
        if isinstance(plan, KetamineIVPlan):
            recorder.act("start_infusion", start, RECORDER)
        else:
            recorder.act("log_nasal_device", start, RECORDER)
    except (RefusedAction, ValidationError) as exc:
        raise CliError(f"vigil record: {nurse_message(exc)}") from None
    recorder.now = start
    return recorder


def _device_schedule(recorder: SessionRecorder, t0: datetime) -> list[datetime]:
    devices = recorder.state.devices
    if devices is None or devices.first_device_at is None:
        return []
    remaining = devices.plan.devices - devices.devices_logged
    return [t0 + timedelta(minutes=5 * (i + 1)) for i in range(remaining)]


def _stop_dosing(recorder: SessionRecorder, t: datetime) -> None:
    log = recorder.state.infusion
    if log is not None and log.ended_at is None and log.started_at is not None:
        recorder.act("stop_infusion", t, RECORDER, "recording ended")


def _install_signals(stop: threading.Event) -> dict:
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore_signals(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def cmd_sessions(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """List sessions, one line (or JSON object) each; from the clinic record (``--db postgresql://…``)
    every chair's, with the chair's name (and ``chair_session``, its id there; ``complete``; ``flag``)."""
    try:
        store = open_reader(args.db)
    except (StoreError, OSError) as exc:
        raise CliError(f"vigil sessions: {exc}", status=1) from None
    try:
        chair = args.chair
        if chair is not None and chair not in store.chairs():
            raise CliError(f"vigil sessions: no chair named {chair!r} in {store.path}"
                           + (f" (chairs: {', '.join(store.chairs())})" if store.chairs() else ""), status=1)
        for s in store.list_sessions(**({"chair": chair} if chair is not None else {})):
            status, phase = _outcome(store, s)
            record = {"id": s.id, "patient": s.patient, "protocol": s.protocol, "status": status,
                      "phase": phase, "started_at": s.started_at.isoformat(),
                      "ended_at": s.ended_at.isoformat() if s.ended_at else None,
                      "n_observations": s.n_observations, "n_alarms": s.n_alarms, "device": s.device}
            where = ""
            if isinstance(s, ChairSessionSummary):
                record.update(chair=s.chair, chair_session=s.chair_session_id, complete=s.complete, flag=s.flag)
                where = f"{s.chair}#{s.chair_session_id}  " + ("FLAGGED  " if s.flag else "")
            if args.json:
                out.write(json.dumps(record) + "\n")
            else:
                ended = f"{s.ended_at:%Y-%m-%d %H:%M}" if s.ended_at else "—"
                out.write(f"{s.id:>5}  {s.started_at:%Y-%m-%d %H:%M}  {ended:16}  {status:10}  {s.protocol:12}  "
                          f"{s.n_observations:>8} obs  {s.n_alarms:>4} alarms  {where}{s.patient}\n")
    finally:
        store.close()
    return 0


def _outcome(store: StoreReader, s: SessionSummary) -> tuple[str, str]:
    """How a session ended, as ``(status, phase)`` for the listing: "discharged" when its record holds
    the discharge sign-off (the ``session_closed`` entry), "aborted" when it ended without discharge,
    "closed" when recording stopped with neither (``vigil record``), else the stored status and phase
    (the store's phase stops at the last phase of an open session)."""
    if s.status == "aborted":
        return "aborted", "aborted"
    if s.status == "closed" and any(e.kind == "session_closed" for e in store.effective_entries(s.id, "signoff")):
        return "discharged", "discharged"
    return s.status, s.phase
