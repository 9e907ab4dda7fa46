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
import signal
import threading
from datetime import datetime, timedelta
from typing import IO, Any

from pydantic import ValidationError

from collections.abc import Callable

from drivers.model import NumericObservation, WaveformChunk
from drivers.transport import DeviceUrlError, parse_device_url
from monitor.alarms.engine import AlarmEvent
from monitor.app.chair import Chair, ChairSetupError
from monitor.app.listeners import PipelineListener
from monitor.app.service import SessionService
from monitor.cli import CliError
from monitor.alarms.profile import ProfileError
from monitor.config import load_clinic_profile, load_clinic_settings
from monitor.patient import Patient
from monitor.protocols import EsketaminePlan, KetamineIVPlan
from monitor.staff import Actor, RefusedAction, Role, nurse_message
from monitor.store import StoreError

RECORDER = Actor(username="vigil-record", display_name="vigil record (unattended)", role=Role.NURSE)
CLOSE_MEANING = "recording ended by vigil record (unattended; not clinically reviewed)"
_PRINTED = {"started", "escalated", "ended"}


class _Printer(PipelineListener):
    """Prints alarm starts, escalations and ends as JSON lines; notes the first data from the device
    (a numeric or a waveform: a batch that only says the connection is lost is not data)."""

    def __init__(self, say: Callable[[dict[str, Any]], None]) -> None:
        self.say = say
        self.first_batch = threading.Event()

    def on_batch(self, items: list[Any]) -> None:
        if any(isinstance(item, (NumericObservation, WaveformChunk)) for item in items):
            self.first_batch.set()

    def on_alarm_event(self, event: AlarmEvent) -> None:
        if event.event in _PRINTED:
            self.say(event.as_record())


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
        parse_device_url(args.device)
        settings = load_clinic_settings()
        load_clinic_profile()   # a bad clinic profile is refused before anything starts
        patient = Patient(display_name=args.patient, weight_kg=weight)
        plan = _plan(args, weight, settings)
    except (DeviceUrlError, ProfileError, RefusedAction, ValidationError, ValueError) as exc:
        message = nurse_message(exc) if isinstance(exc, (RefusedAction, ValidationError)) else str(exc)
        raise CliError(f"vigil record: {message}") from None
    _check_board(args, settings)

    def say(record: dict[str, Any]) -> None:
        out.write(json.dumps(record) + "\n")
        out.flush()

    def writer_failed(exc: BaseException) -> None:
        err.write(f"vigil record: recording failed, retrying: {exc}\n")

    try:
        chair = Chair(args.device, args.db, board_args=args, on_writer_error=writer_failed)
    except ChairSetupError as exc:
        raise CliError(f"vigil record: {exc}", status=1) from None
    printer = _Printer(say)
    chair.pipeline.add_listener(printer)
    service = chair.service
    if chair.publisher is not None:
        err.write(f"vigil record: publishing chair {chair.publisher.chair} to {chair.publisher.options.address.url}\n")
    if chair.clinic_link is not None:
        err.write(f"vigil record: copying to the clinic record as chair {chair.clinic_link.chair}\n")
    stop = threading.Event()
    previous = _install_signals(stop)
    session_id: int | None = None
    try:
        chair.start()
        if not printer.first_batch.wait(10):
            if stop.is_set():
                raise CliError("vigil record: stopped before the device sent anything", status=1)
            detail = chair.pipeline.link_detail   # e.g. the port is in use by another program
            raise CliError(f"vigil record: no data from the device within 10 s{f': {detail}' if detail else ''}",
                           status=1)
        session_id = _open(args, chair, patient, plan, err)
        t0 = service.now()
        state = service.session()
        if state is None:  # _open started or resumed one, so only a stopped pipeline gets here
            raise CliError("vigil record: the session is not being recorded", status=1)
        baseline_due = t0 + timedelta(seconds=60) if state.pre_dose_waiver and state.baseline is None else None
        devices_due = _device_schedule(state, t0)
        end = t0 + timedelta(seconds=duration)
        while not stop.wait(0.1):
            now = service.now()
            if baseline_due is not None and now >= baseline_due:
                baseline_due = None
                service.record_baseline_from_start(RECORDER, t=now)
            while devices_due and now >= devices_due[0]:
                service.log_nasal_device(RECORDER, t=devices_due.pop(0))
            if now >= end:
                break
        _stop_dosing(service)
    finally:
        _restore_signals(previous)
        if session_id is not None:
            try:
                service.finish_unattended(RECORDER, CLOSE_MEANING)
            except (TimeoutError, StoreError) as exc:  # writing fails: the closing is kept with the backlog
                err.write(f"vigil record: the session could not be closed now ({str(exc) or 'writing is failing'})\n")
        chair.close(30)
    if chair.unsaved is not None:
        raise CliError(f"vigil record: {chair.unsaved.message()}", status=1)
    say({"event": "session_closed", "session": session_id})
    return 0


def _check_board(args: argparse.Namespace, settings: Any) -> None:
    """A bad clinic-board option stops ``vigil record`` before anything is recorded."""
    from monitor.alarms.profile import default_profile  # noqa: PLC0415
    from monitor.board.setup import BoardSetupError, chair_publisher  # noqa: PLC0415

    try:
        chair_publisher(args, settings, default_profile())
    except BoardSetupError as exc:
        raise CliError(f"vigil record: {exc}") from None


def _open(args: argparse.Namespace, chair: Chair, patient: Patient, plan: KetamineIVPlan | EsketaminePlan,
          err: IO[str]) -> int:
    service, records = chair.service, chair.records
    if args.resume:
        open_ = records.open_sessions()
        if open_:
            record = open_[-1]
            err.write(f"vigil record: resuming session {record.id} (left open at "
                      f"{records.last_data_time(record.id) or record.started_at:%Y-%m-%d %H:%M:%S} UTC)\n")
            return service.resume_session(record.id, RECORDER)
        err.write("vigil record: no open session to resume; starting a new one\n")
    else:
        for record in records.open_sessions():
            err.write(f"vigil record: session {record.id} was left open (use --resume to carry it on)\n")
    try:
        session_id = service.start_session(patient, plan, RECORDER)
        service.waive_pre_dose_check(RECORDER, "unattended recording (vigil record): the baseline is taken from "
                                     "the first minute")
        if isinstance(plan, KetamineIVPlan):
            service.start_infusion(RECORDER)
        else:
            service.log_nasal_device(RECORDER)
    except (RefusedAction, ValidationError) as exc:
        raise CliError(f"vigil record: {nurse_message(exc)}") from None
    return session_id


def _device_schedule(state: Any, t0: datetime) -> list[datetime]:
    devices = state.devices
    if devices is None or devices.first_device_at is None:
        return []
    remaining = devices.plan.devices - devices.devices_logged
    return [t0 + timedelta(minutes=5 * (i + 1)) for i in range(remaining)]


def _stop_dosing(service: SessionService) -> None:
    state = service.session()
    log = state.infusion if state is not None else None
    if log is not None and log.ended_at is None and log.started_at is not None:
        service.stop_infusion(RECORDER, "recording ended")


def _install_signals(stop: threading.Event) -> dict:
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    return previous


def _restore_signals(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
