"""Limits and administration: this session's alarm limits, the clinic's settings and default alarm
limits (charge nurse only), and staff accounts (charge nurse only).

Limits are adjusted with monitor's :meth:`AlarmProfile.adjusted` (inside the bounds the profile
sets); settings with :func:`monitor.settings.update_settings`, which validates every value and
checks the role. The dialogs only show the values, the bounds and the refusals.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from monitor.alarms.profile import AlarmProfile, LimitRule, NibpRule, default_profile
from monitor.display import alarm_unit
from monitor.settings import ClinicSettings, update_settings
from monitor.staff import (
    PIN_MAX_LENGTH,
    Actor,
    PermissionDenied,
    Role,
    require_role,
)
from ui import theme
from ui.context import UiContext
from ui.dialogs.base import (
    ChoiceRow,
    FormDialog,
    FormError,
    describe_error,
    hint,
    parse_number,
    require_token,
)

__all__ = [
    "SETTINGS_FIELDS",
    "AlarmLimitsDialog",
    "ClinicSettingsDialog",
    "LimitsEditor",
    "UsersDialog",
    "adjustable_limits",
]


# =========================================================================== alarm limits

def adjustable_limits(profile: AlarmProfile) -> dict[str, dict[str, Any]]:
    """Every limit of ``profile`` that has bounds, by the key :meth:`AlarmProfile.adjusted` takes
    (``"spo2_low.MEDIUM"``, ``"nibp_high.LOW.sys"``): value, bounds, rule, priority, comparison, unit."""
    out: dict[str, dict[str, Any]] = {}
    for rule in profile.rules:
        if isinstance(rule, LimitRule):
            for level in rule.levels:
                if level.bounds is not None and level.threshold is not None:
                    sign = ("≥" if level.inclusive else ">") if rule.direction == "high" else ("≤" if level.inclusive else "<")
                    out[f"{rule.id}.{level.priority.name}"] = dict(
                        value=level.threshold, bounds=level.bounds, rule=rule, priority=level.priority.name,
                        part="", sign=sign, unit=alarm_unit(profile, rule.id))
        elif isinstance(rule, NibpRule):
            for level in rule.levels:
                sign = ("≥" if level.inclusive else ">") if rule.direction == "high" else ("≤" if level.inclusive else "<")
                for part, bounds in (("sys", level.bounds_sys), ("dia", level.bounds_dia)):
                    value = getattr(level, part)
                    if bounds is not None and value is not None:
                        out[f"{rule.id}.{level.priority.name}.{part}"] = dict(
                            value=value, bounds=bounds, rule=rule, priority=level.priority.name,
                            part="systolic" if part == "sys" else "diastolic", sign=sign, unit="mmHg")
    return out


def _decimals(*values: float) -> int:
    return 0 if all(float(v).is_integer() for v in values) else 1


class LimitsEditor(QWidget):
    """A spin box per adjustable limit of ``profile``, limited to its bounds, grouped by rule in
    ``columns`` balanced columns (0: as many as the screen's width takes, at most three), with the
    value of ``reference`` (the clinic default) and the bounds beside each. :meth:`changes` gives
    the changed limits by key."""

    def __init__(self, profile: AlarmProfile, reference: AlarmProfile | None, reference_label: str,
                 parent: QWidget | None = None, columns: int = 0) -> None:
        super().__init__(parent)
        self.limits = adjustable_limits(profile)
        refs = adjustable_limits(reference) if reference is not None else {}
        self.spins: dict[str, QDoubleSpinBox] = {}
        outer = QHBoxLayout(self)   # the rules in balanced columns: no scrolling
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(theme.px(10))
        groups: dict[str, tuple[QGroupBox, QGridLayout]] = {}
        for key, info in self.limits.items():
            rule = info["rule"]
            if rule.id not in groups:
                box = QGroupBox(rule.label)
                grid = QGridLayout(box)
                grid.setColumnStretch(2, 1)
                grid.setVerticalSpacing(theme.px(4))
                groups[rule.id] = (box, grid)
            grid = groups[rule.id][1]
            low, high = info["bounds"]
            spin = QDoubleSpinBox()
            spin.setDecimals(_decimals(low, high, info["value"]))
            spin.setRange(low, high)
            spin.setValue(info["value"])
            spin.setSuffix(f" {info['unit']}" if info["unit"] and info["unit"] != "%" else info["unit"])
            spin.setFont(theme.font(12))  # the dialogs' font, to size it by
            spin.setMinimumWidth(spin.sizeHint().width() + theme.px(12))
            spin.setAccessibleName(key)
            ref = refs.get(key)
            ref_text = f"{ref['value']:g} " if ref else ""
            text = f"{info['priority']} {info['part']} {info['sign']}".replace("  ", " ")
            row = grid.rowCount()
            grid.addWidget(QLabel(text), row, 0)
            grid.addWidget(spin, row, 1)
            bounds = hint(f"{ref_text}({low:g}–{high:g})")
            bounds.setToolTip(f"{reference_label} {ref['value']:g}; allowed {low:g}–{high:g}" if ref else
                              f"allowed {low:g}–{high:g}")
            bounds.setWordWrap(False)
            grid.addWidget(bounds, row, 2)
            self.spins[key] = spin
        boxes = [box for box, _ in groups.values()]
        if columns <= 0:  # as many as the screen's width takes, at most three
            screen = QGuiApplication.primaryScreen()
            room = screen.availableGeometry().width() - theme.px(60) if screen is not None else 1300
            widest = max((box.sizeHint().width() for box in boxes), default=1) + theme.px(10)
            columns = max(1, min(3, room // widest))
        self.columns = [QVBoxLayout() for _ in range(max(1, min(columns, len(boxes))))]
        for column in self.columns:
            column.setSpacing(theme.px(6))
            outer.addLayout(column, stretch=1)
        # greedily: each group to the column with the fewest limits so far (group title = one row)
        load = [0] * len(self.columns)
        for box in sorted(boxes, key=lambda b: -len(b.findChildren(QDoubleSpinBox))):
            target = load.index(min(load))
            self.columns[target].addWidget(box)
            load[target] += len(box.findChildren(QDoubleSpinBox)) + 1
        for column in self.columns:
            column.addStretch(1)

    def changes(self) -> dict[str, float]:
        """Limits whose value differs from the profile's, by key."""
        out = {}
        for key, spin in self.spins.items():
            if abs(spin.value() - float(self.limits[key]["value"])) > 10 ** -(spin.decimals() + 1):
                out[key] = spin.value()
        return out

    def set_value(self, key: str, value: float) -> None:
        """Set one limit's spin box (clamped to its bounds by the spin box)."""
        self.spins[key].setValue(value)


class AlarmLimitsDialog(FormDialog):
    """This session's alarm limits (``service.session_profile``), each limited to its bounds, with
    the clinic default shown. Apply → ``service.set_alarm_limits(changes, token)``; refusals are shown."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__("Alarm limits for this session", parent, ok_text="Apply")
        self.context = context
        self.body.addWidget(hint("Each limit can be changed within the bounds the clinic set; beside it: the "
                                 "clinic's value and (the bounds). The change is recorded with your name and "
                                 "applies to this session only."))
        self.editor = LimitsEditor(context.service.session_profile, context.profile, "clinic")
        self.body.addWidget(self.editor, stretch=1)

    def apply_changes(self, changes: dict[str, float]) -> None:
        """Adjust the session's limits (monitor refuses a value outside the bounds)."""
        token = require_token(self.context, self, "Sign in to change alarm limits.")
        self.context.service.set_alarm_limits(changes, token)

    def submit(self) -> None:
        """Apply the changed limits (nothing to do when none changed)."""
        changes = self.editor.changes()
        if changes:
            self.apply_changes(changes)


# =========================================================================== clinic settings

#: The settings the dialog edits: tab → (dotted field, label, kind, unit).
SETTINGS_FIELDS: dict[str, list[tuple[str, str, str, str]]] = {
    "Clinic": [
        ("clinic_name", "Clinic name", "text", ""),
        ("clinic_address", "Address", "multiline", ""),
        ("min_patient_age_years", "Minimum patient age", "int", "years"),
        ("pin_min_length", "Shortest staff PIN (6–12)", "int", "digits"),
        ("alarm_latching", "Latching alarms (the signal stays until acknowledged)", "bool", ""),
        ("audio_pause_s", "Audio pause, default", "int", "s"),
        ("audio_pause_max_s", "Audio pause, longest allowed", "int", "s"),
    ],
    "Dosing": [
        ("ketamine_dose_bounds_mg_per_kg", "IV ketamine dose bounds", "pair", "mg/kg"),
        ("ketamine_typical_dose_mg_per_kg", "Typical IV ketamine dose", "float", "mg/kg"),
        ("ketamine_duration_min", "Default infusion duration", "int", "min"),
        ("esketamine_monitoring_min", "Esketamine monitoring, at least", "int", "min"),
        ("pre_dose_bp_advisory_sys_mmhg", "Pre-dose BP advisory above, systolic", "int", "mmHg"),
        ("pre_dose_bp_advisory_dia_mmhg", "Pre-dose BP advisory above, diastolic", "int", "mmHg"),
    ],
    "Schedules": [
        ("schedules.iv.nibp_interval_min", "NIBP during the infusion, every", "int", "min"),
        ("schedules.iv.nibp_interval_high_risk_min", "… first sessions or known hypertension, every", "int", "min"),
        ("schedules.iv.high_risk_first_sessions", "Sessions counted as first sessions", "int", "sessions"),
        ("schedules.iv.recovery_nibp_interval_min", "NIBP in recovery, every", "int", "min"),
        ("schedules.iv.recovery_moaas_interval_min", "MOAA/S in recovery, every", "int", "min"),
        ("schedules.esketamine.bp_after_first_device_min", "Esketamine NIBP after the first device at", "int", "min"),
        ("schedules.esketamine.bp_offer_interval_min", "Esketamine NIBP offered every", "int", "min"),
        ("schedules.grace_min", "An item is overdue after", "int", "min"),
    ],
    "Discharge": [
        ("discharge_min_after_infusion_min", "Discharge not before, after the infusion", "int", "min"),
        ("discharge_aldrete_min", "Modified Aldrete at least", "int", "points"),
        ("discharge_bp_tolerance_pct", "BP within, of baseline", "int", "%"),
        ("discharge_bp_max_age_min", "That BP no older than", "int", "min"),
    ],
}


def _lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        node = node[part]
    return node


class ClinicSettingsDialog(FormDialog):
    """The clinic's settings and default alarm limits — charge nurse only.

    Anyone else sees the settings read-only with monitor's refusal ("Only a charge nurse may change
    clinic settings …"). Save → ``update_settings(current, changes, user)`` (validates and checks
    the role) → ``save_clinic_settings(new)`` and ``store.save_settings(new.model_dump_json(),
    user)``; ``context.settings`` = new; ``context.settings_changed`` emitted. Changed default alarm
    limits are adjusted within their bounds and written with ``profile.to_json()`` to
    ``config_dir() / "alarm_profile.json"`` (``context.profile`` updated; used from the next session).
    """

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__("Clinic settings", parent, ok_text="Save")
        self.context = context
        self.current: ClinicSettings = context.settings
        tree = self.current.model_dump(mode="json")
        self.tabs = QTabWidget()
        self.widgets: dict[str, tuple[str, Any]] = {}
        for tab, fields in SETTINGS_FIELDS.items():
            page = QWidget()
            form = QFormLayout(page)
            form.setSpacing(8)
            for dotted, label, kind, unit in fields:
                value = _lookup(tree, dotted)
                widget = self._field(kind, value)
                text = f"{label} ({unit})" if unit else label
                if kind == "bool":
                    widget.setText(label)
                    form.addRow("", widget)
                else:
                    form.addRow(text, widget if not isinstance(widget, tuple) else self.row(widget[0], QLabel("to"), widget[1]))
                self.widgets[dotted] = (kind, widget)
            self.tabs.addTab(page, tab)
        limits_page = QWidget()
        lp = QVBoxLayout(limits_page)
        lp.addWidget(hint("The clinic's default alarm limits, used from the next session. Beside each: the "
                          "shipped value and (the bounds it can be set within)."))
        self.limits = LimitsEditor(context.profile, default_profile(), "shipped")
        lp.addWidget(self.limits, stretch=1)
        self.tabs.addTab(limits_page, "Default alarm limits")
        self.body.addWidget(self.tabs, stretch=1)
        self.allowed = self._check_role()

    @staticmethod
    def _field(kind: str, value: Any) -> Any:
        if kind == "bool":
            box = QCheckBox()
            box.setChecked(bool(value))
            return box
        if kind == "multiline":
            edit = QPlainTextEdit(str(value))
            edit.setTabChangesFocus(True)
            edit.setMaximumHeight(theme.px(90))
            return edit
        if kind == "pair":
            return (QLineEdit(f"{value[0]:g}"), QLineEdit(f"{value[1]:g}"))
        if kind in ("int", "float"):
            return QLineEdit(f"{value:g}")
        return QLineEdit(str(value))

    def _check_role(self) -> bool:
        user = self.context.user
        try:
            if user is None:
                raise PermissionDenied("Only a charge nurse may change clinic settings: sign in first")
            require_role(user, Role.CHARGE_NURSE, "change clinic settings")
        except PermissionDenied as exc:
            self.show_error(describe_error(exc))
            self.tabs.setEnabled(False)
            self.ok_button.setEnabled(False)
            self.cancel_button.setText("Close")
            return False
        return True

    def changes(self) -> dict[str, Any]:
        """Changed settings by dotted field (numbers parsed; monitor validates the values)."""
        tree = self.current.model_dump(mode="json")
        out: dict[str, Any] = {}
        labels = {dotted: label for fields in SETTINGS_FIELDS.values() for dotted, label, _, _ in fields}
        for dotted, (kind, widget) in self.widgets.items():
            label = labels[dotted].lower().lstrip("… ")
            if kind == "bool":
                value: Any = widget.isChecked()
            elif kind == "multiline":
                value = widget.toPlainText()
            elif kind == "text":
                value = widget.text()
            elif kind == "pair":
                value = [parse_number(widget[0].text(), f"lower {label}"), parse_number(widget[1].text(), f"upper {label}")]
            else:
                value = parse_number(widget.text(), label, integer=kind == "int")
            if value != _lookup(tree, dotted):
                out[dotted] = value
        return out

    def set_field(self, dotted: str, value: Any) -> None:
        """Type ``value`` into the field of ``dotted`` (for keyboard-free use and tests)."""
        kind, widget = self.widgets[dotted]
        if kind == "bool":
            widget.setChecked(bool(value))
        elif kind == "multiline":
            widget.setPlainText(str(value))
        elif kind == "pair":
            widget[0].setText(str(value[0]))
            widget[1].setText(str(value[1]))
        else:
            widget.setText(str(value))

    def submit(self) -> None:
        """Validate everything, then save the settings and the default limits."""
        actor: Actor | None = self.context.user
        if actor is None:
            raise PermissionDenied("Only a charge nurse may change clinic settings: sign in first")
        changes = self.changes()
        limit_changes = self.limits.changes()
        if not changes and not limit_changes:
            update_settings(self.current, changes, actor)   # checks the role even with nothing to save
            return
        new, profile = self.context.clinic.save_settings(self.context.token, self.current, changes,
                                                         self.context.profile, limit_changes)
        self.context.profile = profile
        self.context.settings = new
        self.current = new
        self.context.settings_changed.emit()


# =========================================================================== users

class UsersDialog(FormDialog):
    """Staff accounts — charge nurse only: the list; add (ID, printed name, role, PIN twice);
    deactivate / reactivate; reset a PIN. Accounts are never deleted (the record names them)."""

    def __init__(self, context: UiContext, parent: QWidget | None = None) -> None:
        super().__init__("Staff accounts", parent, ok_text="Done")
        self.cancel_button.hide()
        self.context = context
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["Staff ID", "Printed name", "Role", "Account"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.body.addWidget(self.table, stretch=1)
        actions = QHBoxLayout()
        self.toggle_button = QPushButton("Deactivate")
        self.toggle_button.setAutoDefault(False)
        self.toggle_button.clicked.connect(lambda: self.attempt(self.toggle_active))
        actions.addWidget(self.toggle_button)
        self.new_pin = QLineEdit()
        self.new_pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.new_pin.setPlaceholderText("new PIN")   # the rule in its tooltip: the field stays short in a busy row
        self.new_pin.setToolTip(f"A PIN has {context.clinic.settings.pin_min_length}–{PIN_MAX_LENGTH} digits")
        self.new_pin_again = QLineEdit()
        self.new_pin_again.setEchoMode(QLineEdit.EchoMode.Password)
        self.new_pin_again.setPlaceholderText("new PIN again")
        self.reset_button = QPushButton("Reset PIN")
        self.reset_button.setAutoDefault(False)
        self.reset_button.clicked.connect(lambda: self.attempt(self.reset_pin))
        actions.addStretch(1)
        actions.addWidget(self.new_pin)
        actions.addWidget(self.new_pin_again)
        actions.addWidget(self.reset_button)
        self.body.addLayout(actions)

        self.add_box = add_box = QGroupBox("Add a staff member")
        form = QGridLayout(add_box)
        self.add_id = QLineEdit()
        self.add_id.setPlaceholderText("staff ID")
        self.add_name = QLineEdit()
        self.add_name.setPlaceholderText("printed name")
        self.add_role = ChoiceRow([(r, r.label) for r in Role])
        self.add_role.set_value(Role.NURSE)
        self.add_pin = QLineEdit()
        self.add_pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.add_pin.setPlaceholderText(f"PIN ({context.clinic.settings.pin_min_length}–{PIN_MAX_LENGTH} digits)")
        self.add_pin_again = QLineEdit()
        self.add_pin_again.setEchoMode(QLineEdit.EchoMode.Password)
        self.add_pin_again.setPlaceholderText("PIN again")
        self.add_button = QPushButton("Add")
        self.add_button.setAutoDefault(False)
        self.add_button.clicked.connect(lambda: self.attempt(self.add_user))
        form.addWidget(self.add_id, 0, 0)
        form.addWidget(self.add_name, 0, 1)
        form.addWidget(self.add_role, 0, 2)
        form.addWidget(self.add_pin, 1, 0)
        form.addWidget(self.add_pin_again, 1, 1)
        form.addWidget(self.add_button, 1, 2)
        self.body.addWidget(add_box)
        self.status = hint("")
        self.body.addWidget(self.status)
        self.allowed = self._check_role()
        self.reload()
        self.resize(theme.px(900), theme.px(620))

    def _check_role(self) -> bool:
        try:
            self._require()
        except PermissionDenied as exc:
            self.show_error(describe_error(exc))
            for widget in (self.toggle_button, self.reset_button, self.add_box, self.new_pin, self.new_pin_again):
                widget.setEnabled(False)
            return False
        return True

    def _require(self) -> Actor:
        user = self.context.user
        if user is None:
            raise PermissionDenied("Only a charge nurse may manage staff accounts: sign in first")
        require_role(user, Role.CHARGE_NURSE, "manage staff accounts")
        return user

    def reload(self) -> None:
        """Fill the table from the store."""
        selected = self.selected_login()
        users = self.context.clinic.users()
        self.table.setRowCount(len(users))
        for row, record in enumerate(users):
            role = Role(record.role).label if record.role in Role._value2member_map_ else record.role
            for col, text in enumerate((record.login, record.display_name, role,
                                        "active" if record.active else "deactivated")):
                item = QTableWidgetItem(text)
                item.setData(Qt.ItemDataRole.UserRole, record.login)
                self.table.setItem(row, col, item)
            if record.login == selected:
                self.table.selectRow(row)
        self._selection_changed()

    def selected_login(self) -> str | None:
        """The login of the selected row, or None."""
        items = self.table.selectedItems()
        return items[0].data(Qt.ItemDataRole.UserRole) if items else None

    def select(self, login: str) -> None:
        """Select the row of ``login``."""
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0).text() == login:
                self.table.selectRow(row)
                return
        raise FormError(f"No staff account {login!r}")

    def _selection_changed(self) -> None:
        login = self.selected_login()
        record = self.context.clinic.get_user(login) if login else None
        self.toggle_button.setText("Reactivate" if record is not None and not record.active else "Deactivate")

    def add_user(self) -> None:
        """Add the account in the form (monitor's rules for the ID, name and PIN)."""
        self._require()
        self.show_error("")
        actor = self.context.clinic.add_user(self.context.token, self.add_id.text(), self.add_name.text(),
                                             self.add_role.value() or Role.NURSE, self.add_pin.text(),
                                             self.add_pin_again.text())
        for edit in (self.add_id, self.add_name, self.add_pin, self.add_pin_again):
            edit.clear()
        self.status.setText(f"Added {actor.display_name} ({actor.username}, {actor.role.label}).")
        self.reload()
        self.select(actor.username)

    def toggle_active(self) -> None:
        """Deactivate or reactivate the selected account."""
        self._require()
        self.show_error("")
        login = self.selected_login()
        if login is None:
            raise FormError("Choose a staff account in the list first")
        record = self.context.clinic.get_user(login)
        if record is None:
            raise FormError(f"No staff account {login!r}")
        self.context.clinic.set_active(self.context.token, login, not record.active)
        self.status.setText(f"{record.display_name} {'deactivated' if record.active else 'reactivated'}.")
        self.reload()

    def reset_pin(self) -> None:
        """Give the selected account a new PIN (PIN policy from monitor)."""
        self._require()
        self.show_error("")
        login = self.selected_login()
        if login is None:
            raise FormError("Choose a staff account in the list first")
        self.context.clinic.reset_pin(self.context.token, login, self.new_pin.text(), self.new_pin_again.text())
        self.new_pin.clear()
        self.new_pin_again.clear()
        self.status.setText(f"New PIN set for {login}.")

