"""Assessments and structured events: ranges, totals, descriptions, payload round trips."""

from __future__ import annotations

import pytest
from hypothesis import given, settings as hsettings, strategies as st
from pydantic import ValidationError

from monitor.assessments import (
    ALDRETE_ITEMS, ASSESSMENTS, CADSS, CADSS6, CADSS6_ITEMS, EVENTS, MOAAS, MOAAS_LEVELS, RASS, RASS_LEVELS,
    Anxiety, BPRSPlus, Dissociation, Headache, HypertensionTreated, ModifiedAldrete, Nausea, NauseaVomiting,
    Note, PainNRS, RescueMedication, Route, Severity, Vomiting, parse_assessment, parse_event,
    suggest_aldrete_circulation, suggest_aldrete_spo2,
)
from monitor.staff import RefusedAction, nurse_message

ALDRETE_10 = dict(activity=2, respiration=2, circulation=2, consciousness=2, oxygen_saturation=2)

EXAMPLES = [
    MOAAS(level=3),
    RASS(level=-2),
    CADSS(items=[1] * 23),
    CADSS6(items={1: 0, 2: 1, 6: 2, 7: 3, 15: 4, 22: 0}),
    BPRSPlus(suspiciousness=1, hallucinations=2, unusual_thought_content=3, conceptual_disorganisation=4),
    PainNRS(rating=7),
    NauseaVomiting(nausea=True, vomiting=False),
    ModifiedAldrete(**ALDRETE_10),
]


def test_registry_covers_every_scale():
    assert set(ASSESSMENTS) == {"moaas", "rass", "cadss", "cadss6", "bprs_plus", "pain_nrs", "nausea", "aldrete"}
    assert {type(a) for a in EXAMPLES} == set(ASSESSMENTS.values())


@pytest.mark.parametrize("assessment", EXAMPLES, ids=lambda a: a.kind)
def test_payload_round_trip(assessment):
    payload = assessment.to_payload()
    assert payload["kind"] == assessment.kind
    import json
    again = parse_assessment(json.loads(json.dumps(payload)))  # through JSON, as the store does
    assert again == assessment and again.score == assessment.score == assessment.total
    assert type(assessment).from_payload(payload) == assessment
    assert assessment.describe()


@pytest.mark.parametrize("assessment, score", [
    (EXAMPLES[0], 3), (EXAMPLES[1], -2), (EXAMPLES[2], 23), (EXAMPLES[3], 10), (EXAMPLES[4], 10),
    (EXAMPLES[5], 7), (EXAMPLES[6], 1), (EXAMPLES[7], 10),
])
def test_scores(assessment, score):
    assert assessment.score == score


def test_level_descriptions():
    assert set(MOAAS_LEVELS) == set(range(6)) and set(RASS_LEVELS) == set(range(-5, 5))
    assert MOAAS(level=5).description == "responds readily to name spoken in normal tone"
    assert "painful trapezius squeeze" in MOAAS(level=0).description
    assert RASS(level=4).description.startswith("combative")
    assert RASS(level=-5).description.startswith("unarousable")
    assert RASS(level=-1).describe().startswith("RASS -1: drowsy")
    assert set(ALDRETE_ITEMS) == {"activity", "respiration", "circulation", "consciousness", "oxygen_saturation"}
    assert ALDRETE_ITEMS["oxygen_saturation"][2] == "SpO2 > 92 % on room air"


@pytest.mark.parametrize("build, message", [
    (lambda: MOAAS(level=6), "MOAA/S must be between 0 and 5 \\(got 6\\)"),
    (lambda: MOAAS(level=-1), "MOAA/S must be between 0 and 5"),
    (lambda: MOAAS(level=2.5), "MOAA/S must be a whole number"),
    (lambda: MOAAS(level=True), "MOAA/S must be a whole number"),
    (lambda: MOAAS(level="three"), "MOAA/S must be a whole number"),
    (lambda: RASS(level=5), "RASS must be between -5 and 4 \\(got 5\\)"),
    (lambda: RASS(level=-6), "RASS must be between -5 and 4"),
    (lambda: CADSS(items=[0] * 22), "CADSS needs 23 item scores \\(got 22\\)"),
    (lambda: CADSS(items=[0] * 22 + [5]), "CADSS item 23 must be between 0 and 4 \\(got 5\\)"),
    (lambda: CADSS(items="0" * 23), "list of 23"),
    (lambda: CADSS6(items={1: 0, 2: 0, 6: 0, 7: 0, 15: 0}), "missing 22"),
    (lambda: CADSS6(items={1: 0, 2: 0, 6: 0, 7: 0, 15: 0, 22: 0, 3: 1}), "CADSS-6 has no item 3"),
    (lambda: CADSS6(items={1: 0, 2: 0, 6: 0, 7: 0, 15: 0, 22: 9}), "CADSS-6 item 22 must be between 0 and 4"),
    (lambda: BPRSPlus(suspiciousness=0, hallucinations=1, unusual_thought_content=1, conceptual_disorganisation=1),
     "BPRS\\+ suspiciousness must be between 1 and 7"),
    (lambda: BPRSPlus(suspiciousness=1, hallucinations=8, unusual_thought_content=1, conceptual_disorganisation=1),
     "BPRS\\+ hallucinations must be between 1 and 7"),
    (lambda: PainNRS(rating=11), "Pain NRS must be between 0 and 10"),
    (lambda: NauseaVomiting(nausea="maybe", vomiting=False), "Nausea must be yes or no"),
    (lambda: ModifiedAldrete(**{**ALDRETE_10, "respiration": 3}), "Aldrete respiration must be between 0 and 2"),
    (lambda: ModifiedAldrete(activity=2), "Field required"),
])
def test_bad_items_are_refused_with_the_scale_and_range(build, message):
    with pytest.raises(ValidationError, match=message):
        build()


def test_cadss6_is_items_1_2_6_7_15_22_of_the_full_scale():
    items = list(range(23))
    items = [n % 5 for n in items]  # item k scores (k-1) % 5
    full = CADSS(items=items)
    short = full.cadss6()
    assert tuple(short.items) == CADSS6_ITEMS
    assert short.items == {n: (n - 1) % 5 for n in CADSS6_ITEMS}
    assert full.item(22) == 21 % 5
    with pytest.raises(RefusedAction, match="items 1–23"):
        full.item(24)


@hsettings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=23, max_size=23))
def test_cadss_totals_stay_in_range(items):
    full = CADSS(items=items)
    assert 0 <= full.score == sum(items) <= 92
    assert 0 <= full.cadss6().score <= 24


@hsettings(max_examples=40, deadline=None)
@given(st.integers(-20, 20), st.integers(-20, 20))
def test_moaas_and_rass_accept_exactly_their_ranges(moaas, rass):
    for cls, value, low, high in ((MOAAS, moaas, 0, 5), (RASS, rass, -5, 4)):
        if low <= value <= high:
            assert cls(level=value).score == value
        else:
            with pytest.raises(ValidationError):
                cls(level=value)


def test_payload_of_another_kind_or_unknown_kind_is_refused():
    with pytest.raises(RefusedAction, match="not a MOAA/S"):
        MOAAS.from_payload({"kind": "rass", "level": 0})
    with pytest.raises(RefusedAction, match="Unknown assessment 'gcs'"):
        parse_assessment({"kind": "gcs", "score": 15})


@pytest.mark.parametrize("spo2, on_oxygen, expected", [
    (99, False, 2), (93, False, 2), (92.5, False, 2), (92, False, 1), (91, False, 1),
    (97, True, 1), (91, True, 1), (90, True, 0), (85, False, 0),
])
def test_aldrete_spo2_suggestion(spo2, on_oxygen, expected):
    assert suggest_aldrete_spo2(spo2, on_oxygen) == expected


def test_aldrete_suggestions_refuse_nonsense():
    with pytest.raises(RefusedAction, match="between 0 and 100"):
        suggest_aldrete_spo2(104)
    assert [suggest_aldrete_circulation(s, 120) for s in (120, 144, 96, 150, 179, 180, 60)] == [2, 2, 2, 1, 1, 0, 0]
    with pytest.raises(RefusedAction):
        suggest_aldrete_circulation(120, 0)


# --------------------------------------------------------------------------- events

EVENT_EXAMPLES = [
    Dissociation(severity="moderate"), Anxiety(), Nausea(comment="after 20 min"), Vomiting(severity=Severity.MILD),
    Headache(), HypertensionTreated(comment="labetalol given"),
    RescueMedication(drug="Ondansetron", dose=4, dose_unit="mg", route="iv", given_by="Ann Lee"),
    Note(text="Patient asked for the lights dimmed.\nMusic on."),
]


def test_event_registry_and_round_trips():
    assert set(EVENTS) == {"dissociation", "anxiety", "nausea", "vomiting", "headache", "hypertension_treated",
                           "rescue_medication", "note"}
    for event in EVENT_EXAMPLES:
        assert parse_event(event.to_payload()) == event
        assert event.describe()
    med = EVENT_EXAMPLES[6]
    assert med.route is Route.IV and med.describe() == "Ondansetron 4 mg IV, given by Ann Lee"
    assert Dissociation(severity="severe").describe() == "Dissociation / emergence reaction (severe)"
    assert EVENT_EXAMPLES[-1].text.endswith("Music on.")  # line breaks kept in notes


@pytest.mark.parametrize("build, message", [
    (lambda: RescueMedication(drug="", dose=4, dose_unit="mg", route="IV", given_by="Ann"), "Drug name is required"),
    (lambda: RescueMedication(drug="x" * 61, dose=4, dose_unit="mg", route="IV", given_by="Ann"), "at most 60"),
    (lambda: RescueMedication(drug="Midazolam", dose=0, dose_unit="mg", route="IV", given_by="Ann"), "above 0"),
    (lambda: RescueMedication(drug="Midazolam", dose="two", dose_unit="mg", route="IV", given_by="Ann"), "not a number"),
    (lambda: RescueMedication(drug="Midazolam", dose=2, dose_unit="drops", route="IV", given_by="Ann"),
     "Dose unit 'drops' is not one of mg, mcg"),
    (lambda: RescueMedication(drug="Midazolam", dose=2, dose_unit="mg", route="intrathecal", given_by="Ann"),
     "Route 'intrathecal' is not one of IV, IM"),
    (lambda: RescueMedication(drug="Midazolam", dose=2, dose_unit="mg", route="IV", given_by=" "), "Given by is required"),
    (lambda: Note(text="   "), "Note is required"),
    (lambda: Note(text="x" * 1001), "Note may have at most 1000 characters \\(this has 1001\\)"),
    (lambda: Anxiety(severity="extreme"), "severity"),
    (lambda: Headache(comment="y" * 201), "Comment may have at most 200"),
])
def test_bad_events_are_refused(build, message):
    with pytest.raises(ValidationError, match=message):
        build()


def test_event_kind_mismatch_and_unknown_kind():
    with pytest.raises(RefusedAction, match="Unknown event 'seizure'"):
        parse_event({"kind": "seizure"})
    with pytest.raises(RefusedAction, match="not a Headache"):
        Headache.from_payload({"kind": "anxiety"})
    with pytest.raises(ValidationError) as exc:
        RescueMedication(drug="", dose=-1, dose_unit="mg", route="IV", given_by="")
    assert nurse_message(exc.value).count(";") == 2  # three problems, one readable line
