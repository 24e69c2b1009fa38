"""Risk instruments as data: definitions are checked through, answers scored exactly."""

from __future__ import annotations

import copy
import itertools
import json
import pickle
from collections.abc import Callable
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.core.errors import Conflict, Invalid, NotFound
from app.risk.instruments import (
    MAX_DEFINITION_CHARS,
    Assessment,
    ChoiceItem,
    Instrument,
    InstrumentError,
    InstrumentRegistry,
    MultiChoiceItem,
    NumberItem,
    YesNoItem,
    builtin_instruments,
    builtin_registry,
    dump_instrument,
    get_instrument,
    load_instrument,
    load_instrument_folder,
    parse_instrument,
    score,
)

TINY_PATH = Path(__file__).with_name("tiny-fixture.yaml")
TINY_TEXT = TINY_PATH.read_text("utf-8")
TINY = load_instrument(TINY_PATH)
EXAMPLE = get_instrument("example-safety-screen", "1.0")
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def tiny_data() -> dict[str, Any]:
    """The tiny fixture as plain data, a fresh copy to break."""
    return yaml.safe_load(TINY_TEXT)


def problems_of(data: Any) -> list[str]:
    with pytest.raises(InstrumentError) as caught:
        parse_instrument(data)
    return caught.value.messages


def answer_problems(instrument: Instrument, answers: Any, **options: Any) -> list[str]:
    with pytest.raises(InstrumentError) as caught:
        score(instrument, answers, **options)
    return caught.value.messages


# --- the shipped example ---------------------------------------------------------------------


def test_example_instrument_loads_and_says_what_it_is() -> None:
    assert [instrument.key for instrument in builtin_instruments()] == [
        ("example-safety-screen", "1.0")
    ]
    assert EXAMPLE.name == "Example safety screen (illustrative, not validated)"
    licence = EXAMPLE.licence.lower()
    assert "illustrative example for software testing" in licence
    assert "not a validated" in licence and "must not be used to make decisions" in licence
    assert len(EXAMPLE.items) == 12
    assert {type(item) for item in EXAMPLE.items} == {YesNoItem, ChoiceItem, MultiChoiceItem,
                                                      NumberItem}
    assert [level.name for level in EXAMPLE.levels] == ["low", "elevated", "high", "severe"]
    assert EXAMPLE.highest_level.name == "severe"
    assert EXAMPLE.max_score == EXAMPLE.scoring.max_score == 31
    assert [item.id for item in EXAMPLE.items if item.critical] == ["breathing_restricted"]
    assert [item.id for item in EXAMPLE.items if not item.required] == ["service_contacts"]


def test_builtins_are_read_once_and_cannot_be_changed_through_a_registry() -> None:
    assert builtin_instruments()[0] is builtin_instruments()[0]
    registry = builtin_registry()
    registry.add(TINY)
    assert ("tiny-fixture", "2") in registry
    assert ("tiny-fixture", "2") not in builtin_registry()
    with pytest.raises(NotFound):
        get_instrument("tiny-fixture")
    with pytest.raises(ValidationError, match="frozen"):
        EXAMPLE.items[0].text = "changed"  # type: ignore[misc]


def test_a_broken_or_repeated_file_in_an_instrument_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(TINY_TEXT, "utf-8")
    (tmp_path / "notes.txt").write_text("not an instrument", "utf-8")
    assert load_instrument_folder(tmp_path) == (TINY,)
    (tmp_path / "b.json").write_text(json.dumps(tiny_data()), "utf-8")
    with pytest.raises(InstrumentError) as caught:
        load_instrument_folder(tmp_path)
    assert caught.value.detail == "The risk instrument file b.json repeats another file."
    assert caught.value.messages == ["tiny-fixture version 2 is defined twice"]
    (tmp_path / "b.json").write_text(json.dumps(tiny_data() | {"levels": []}), "utf-8")
    with pytest.raises(InstrumentError) as caught:
        load_instrument_folder(tmp_path)
    assert caught.value.detail == "The risk instrument file b.json is invalid."
    assert caught.value.messages == ["levels: must list at least 2 entries"]


def test_lookup_by_id_and_version() -> None:
    assert get_instrument("example-safety-screen") is EXAMPLE
    with pytest.raises(NotFound):
        get_instrument("example-safety-screen", "9.9")
    with pytest.raises(NotFound):
        get_instrument("danger-assessment")


# --- reading and writing ---------------------------------------------------------------------


def test_text_bytes_path_and_json_give_the_same_instrument() -> None:
    assert load_instrument(TINY_TEXT) == TINY
    assert load_instrument(TINY_TEXT.encode()) == TINY
    assert load_instrument(TINY_PATH) == TINY
    as_json = json.dumps(tiny_data())
    assert load_instrument(as_json) == TINY
    assert load_instrument(as_json, syntax="json") == TINY
    assert TINY.version == "2"  # a whole-number version is kept as text


def test_a_string_is_never_taken_for_a_file_name() -> None:
    with pytest.raises(InstrumentError) as caught:
        load_instrument(str(TINY_PATH))
    assert caught.value.messages == ["the definition must be a mapping of keys to values"]


def test_file_suffix_decides_the_syntax(tmp_path: Path) -> None:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_data()), "utf-8")
    assert load_instrument(path) == TINY
    path.write_text(TINY_TEXT, "utf-8")  # YAML in a .json file is refused, not guessed at
    with pytest.raises(InstrumentError, match="not valid JSON"):
        load_instrument(path)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("id: [unclosed\n", "not valid YAML: while parsing a flow sequence"),
        ('{"id": }', "not valid JSON: Expecting value (line 1, column 8)"),
        ("id: a\nid: b\n", "not valid YAML: duplicate key 'id' (line 2, column 1)"),
        ('{"id": "a", "id": "b"}', "not valid JSON: duplicate key 'id'"),
        ("a: &x [1, 2]\nb: *x\n", "aliases (*name) are not allowed"),
        ("id: !!python/object/apply:os.system ['true']\n", "could not determine a constructor"),
        ("yes: 1\n", "keys must be text (quote it"),
        ('{"version": NaN}', "not valid JSON: NaN is not a number"),
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("- a\n- b\n", "the definition must be a mapping of keys to values"),
        ("just words", "the definition must be a mapping of keys to values"),
        ("", "the definition is empty"),
        ("# only a comment\n", "the definition is empty"),
        (b"\xff\xfe\x00", "the definition is not UTF-8 text"),
        ("[" * 20_000 + "]" * 20_000, "nested too deeply"),
        ("a: " + "[" * 20_000 + "]" * 20_000, "nested too deeply"),
        ("#" * (MAX_DEFINITION_CHARS + 1), f"longer than {MAX_DEFINITION_CHARS} characters"),
    ],
)
def test_unreadable_text_is_refused_plainly(source: str | bytes, expected: str) -> None:
    with pytest.raises(InstrumentError) as caught:
        load_instrument(source)
    [message] = caught.value.messages
    assert expected in message
    assert caught.value.__cause__ is None and "Traceback" not in str(caught.value)


def test_dump_reads_back_equal_in_both_syntaxes() -> None:
    for instrument in (EXAMPLE, TINY):
        for syntax in ("yaml", "json"):
            text = dump_instrument(instrument, syntax=syntax)  # type: ignore[arg-type]
            assert load_instrument(text) == instrument
    dumped = yaml.safe_load(dump_instrument(TINY))
    assert list(dumped["items"][0])[:2] == ["id", "type"]
    assert dumped["items"][1]["weight"] == 0.5 and dumped["version"] == "2"


# --- malformed definitions -------------------------------------------------------------------

Change = Callable[[dict[str, Any]], Any]


def items(data: dict[str, Any], index: int) -> dict[str, Any]:
    return data["items"][index]


BROKEN: list[tuple[str, Change, list[str]]] = [
    ("misspelt top-level key", lambda d: d.update(license=d.pop("licence")),
     ["licence: is required", "license: unknown key (did you mean 'licence'?)"]),
    ("misspelt item key", lambda d: items(d, 0).update(wieght=items(d, 0).pop("weight")),
     ["items[0].weight: is required", "items[0].wieght: unknown key (did you mean 'weight'?)"]),
    ("unknown option key", lambda d: items(d, 2)["options"][0].update(colour="red"),
     ["items[2].options[0].colour: unknown key; allowed: value, label, weight"]),
    ("options on a yes/no item", lambda d: items(d, 0).update(options=[]),
     ["items[0].options: unknown key for a yes_no item; allowed: id, text, help, required, "
      "critical, type, weight"]),
    ("unknown level key", lambda d: d["levels"][0].update(weight=1),
     ["levels[0].weight: unknown key; allowed: name, label, description, min, max"]),
    ("duplicate item id", lambda d: items(d, 3).update(id="a"),
     ["items[3].id: duplicate id 'a' (also items[0])"]),
    ("choice without options", lambda d: items(d, 2).pop("options"),
     ["items[2].options: is required"]),
    ("choice with no options", lambda d: items(d, 2).update(options=[]),
     ["items[2].options: must list at least 2 entries"]),
    ("multi-choice with no options", lambda d: items(d, 5).update(options=[]),
     ["items[5].options: must list at least 1 entry"]),
    ("weight is a word", lambda d: items(d, 2)["options"][1].update(weight="heavy"),
     ["items[2].options[1].weight: must be a number"]),
    ("weight is a numeric string", lambda d: items(d, 0).update(weight="2"),
     ["items[0].weight: must be a number"]),
    ("weight is a boolean", lambda d: items(d, 0).update(weight=True),
     ["items[0].weight: must be a number"]),
    ("weight is missing", lambda d: items(d, 0).pop("weight"), ["items[0].weight: is required"]),
    ("negative weight", lambda d: items(d, 0).update(weight=-1),
     ["items[0].weight: must not be negative"]),
    ("too precise weight", lambda d: items(d, 0).update(weight=0.12345),
     ["items[0].weight: must have at most 4 decimal places"]),
    ("infinite weight", lambda d: items(d, 0).update(weight=float("inf")),
     ["items[0].weight: must be a finite number"]),
    ("huge weight", lambda d: items(d, 0).update(weight=10**7),
     ["items[0].weight: must be at most 1000000"]),
    ("critical choice", lambda d: items(d, 2).update(critical=True),
     ['items[2].critical: only yes_no items can be critical ("yes" to a critical item forces '
      'the highest level)']),
    ("critical number", lambda d: items(d, 3).update(critical=True),
     ['items[3].critical: only yes_no items can be critical ("yes" to a critical item forces '
      'the highest level)']),
    ("critical is text", lambda d: items(d, 0).update(critical="yes"),
     ["items[0].critical: must be true or false"]),
    ("unknown item type", lambda d: items(d, 0).update(type="scale"),
     ["items[0].type: must be one of: yes_no, choice, multi_choice, number"]),
    ("item type missing", lambda d: items(d, 0).pop("type"),
     ["items[0].type: is required (one of: yes_no, choice, multi_choice, number)"]),
    ("item is not a mapping", lambda d: d["items"].append("Were you hurt?"),
     ["items[6]: must be a mapping of keys to values"]),
    ("empty question", lambda d: items(d, 0).update(text="   "),
     ["items[0].text: must not be empty"]),
    ("bad item id", lambda d: items(d, 0).update(id="Item A"),
     ["items[0].id: must be lowercase letters and digits joined by _ or -"]),
    ("option value read as a boolean", lambda d: items(d, 2)["options"][0].update(value=True),
     ["items[2].options[0].value: must be a string (quote it: YAML reads yes, no, on and off "
      "as true or false)"]),
    ("duplicate option value", lambda d: items(d, 2)["options"][1].update(value="x"),
     ["items[2].options[1].value: duplicate value 'x' (also options[0])"]),
    ("number scored both ways", lambda d: items(d, 3).update(bands=[{"min": 0, "weight": 1}]),
     ["items[3]: needs either per_unit (points per unit) or bands, not both and not neither"]),
    ("number scored neither way", lambda d: items(d, 3).pop("per_unit"),
     ["items[3]: needs either per_unit (points per unit) or bands, not both and not neither"]),
    ("number range upside down", lambda d: items(d, 3).update(min=5),
     ["items[3].max: must be above min (5)"]),
    ("number bound not whole", lambda d: items(d, 3).update(min=0.5),
     ["items[3].min: must be a whole number"]),
    ("negative per-unit range", lambda d: items(d, 3).update(min=-1),
     ["items[3].min: must not be negative when scoring per_unit"]),
    ("bands with a gap", lambda d: (items(d, 3).pop("per_unit"), items(d, 3).update(
        bands=[{"min": 0, "max": 1, "weight": 0}, {"min": 3, "weight": 1}])),
     ["items[3].bands[1].min: must be 2: it leaves a gap after bands[0] (0-1)"]),
    ("bands overlapping", lambda d: (items(d, 3).pop("per_unit"), items(d, 3).update(
        bands=[{"min": 0, "max": 1, "weight": 0}, {"min": 1, "weight": 1}])),
     ["items[3].bands[1].min: must be 2: it overlaps bands[0] (0-1)"]),
    ("bands starting late", lambda d: (items(d, 3).pop("per_unit"), items(d, 3).update(
        bands=[{"min": 1, "weight": 1}])),
     ["items[3].bands[0].min: the first band must start at min (0)"]),
    ("bands ending early", lambda d: (items(d, 3).pop("per_unit"), items(d, 3).update(
        bands=[{"min": 0, "max": 3, "weight": 1}])),
     ["items[3].bands[0].max: the last band must end at max (4), or leave max out"]),
    ("open band before the last", lambda d: (items(d, 3).pop("per_unit"), items(d, 3).update(
        bands=[{"min": 0, "weight": 0}, {"min": 2, "weight": 1}])),
     ["items[3].bands[0].max: is required (only the last band may leave it out)"]),
    ("no items", lambda d: d.update(items=[]), ["items: must list at least 1 entry"]),
    ("items not a list", lambda d: d.update(items={"a": 1}), ["items: must be a list"]),
    ("one level", lambda d: d.update(levels=[{"name": "only", "min": 0}]),
     ["levels: must list at least 2 entries"]),
    ("levels overlapping", lambda d: d["levels"][1].update(min=1.5),
     ["levels[1].min: overlaps levels[0] ('low' ends at 1.5)"]),
    ("levels with a gap", lambda d: d["levels"][1].update(min=2.5),
     ["levels[1].min: leaves a gap after levels[0] ('low' ends at 1.5): a score of 2 would "
      "fall in no level"]),
    ("levels not starting at 0", lambda d: d["levels"][0].update(min=0.5),
     ["levels[0].min: the first level must start at 0"]),
    ("levels stopping short", lambda d: d["levels"][2].update(max=5),
     ["levels[2].max: ends short of the highest possible score, 5.5: make it 5.5 or leave it "
      "out"]),
    ("levels going beyond", lambda d: d["levels"][2].update(max=6),
     ["levels[2].max: ends beyond the highest possible score, 5.5: make it 5.5 or leave it "
      "out"]),
    ("open level before the last", lambda d: d["levels"][0].pop("max"),
     ["levels[0].max: is required (only the last level may leave it out)"]),
    ("level upside down", lambda d: d["levels"][1].update(max=1),
     ["levels[1].max: is below min (2)"]),
    ("unreachable level", lambda d: d["levels"][2].update(min=6),
     ["levels[2].min: leaves a gap after levels[1] ('medium' ends at 3.5): a score of 4 would "
      "fall in no level",
      "levels[2]: no possible score falls in this level (6 and above; the items add up to at "
      "most 5.5)"]),
    ("duplicate level name", lambda d: d["levels"][1].update(name="low"),
     ["levels[1].name: duplicate level 'low' (also levels[0])"]),
    ("threshold not a number", lambda d: d["levels"][1].update(min="2"),
     ["levels[1].min: must be a number"]),
    ("declared maximum wrong", lambda d: d["scoring"].update(max_score=6),
     ["scoring.max_score: is 6 but the items add up to at most 5.5"]),
    ("unknown scoring method", lambda d: d["scoring"].update(method="weighted"),
     ["scoring.method: must be 'sum'"]),
    ("scoring missing", lambda d: d.pop("scoring"), ["scoring: is required"]),
    ("version read as a number", lambda d: d.update(version=1.1),
     ["version: must be quoted (YAML and JSON read 1.10 as the number 1.1)"]),
    ("version not semver-ish", lambda d: d.update(version="v1"),
     ['version: must be a version such as "1", "1.2", "1.2.3" or "2.0-draft"']),
    ("bad instrument id", lambda d: d.update(id="Tiny_Fixture"),
     ["id: must be lowercase letters and digits joined by hyphens"]),
    ("bad language", lambda d: d.update(language="English"),
     ["language: must be a language tag such as en, es or pt-BR"]),
    ("future format", lambda d: d.update(format=2), ["format: must be 1"]),
]


@pytest.mark.parametrize(("change", "expected"), [(c, e) for _, c, e in BROKEN],
                         ids=[name for name, _, _ in BROKEN])
def test_malformed_definition_is_refused_naming_the_path(
    change: Change, expected: list[str]
) -> None:
    data = tiny_data()
    change(data)
    assert sorted(problems_of(data)) == sorted(expected)


def test_every_problem_is_reported_at_once() -> None:
    data = tiny_data()
    items(data, 0)["weight"] = "three"
    items(data, 2)["options"][1]["weight"] = None
    items(data, 4)["colour"] = "red"
    data.pop("language")
    messages = problems_of(data)
    assert [message.split(":")[0] for message in messages] == [
        "language", "items[0].weight", "items[2].options[1].weight", "items[4].colour",
    ]


def test_the_error_survives_pickling() -> None:
    """A Celery task may carry it back as a result."""
    with pytest.raises(InstrumentError) as caught:
        parse_instrument(tiny_data() | {"version": 1.5})
    again = pickle.loads(pickle.dumps(caught.value))
    assert again.problems == caught.value.problems and again.detail == caught.value.detail


def test_problems_become_api_field_errors() -> None:
    data = tiny_data()
    items(data, 2)["options"][1]["weight"] = "heavy"
    with pytest.raises(InstrumentError) as caught:
        parse_instrument(data)
    invalid = caught.value.to_invalid()
    assert isinstance(invalid, Invalid) and invalid.status == 422
    assert invalid.detail == "The risk instrument definition is invalid."
    assert invalid.errors == [{"field": "items[2].options[1].weight", "location": "body",
                               "message": "must be a number", "type": "number_type"}]
    with pytest.raises(InstrumentError) as caught:
        load_instrument("id: [")
    [error] = caught.value.to_invalid(root_field="definition_text").errors or []
    assert error["field"] == "definition_text" and error["type"] == "syntax"
    assert "pydantic" not in str(caught.value)


# --- scoring by hand -------------------------------------------------------------------------

# Every required item of the example at its lowest answer (service_contacts is optional).
CALM = {
    "violence_trend": "none", "threatened_to_kill": False, "breathing_restricted": False,
    "weapon_access": False, "weapon_threat": False, "separation": "not_leaving",
    "followed_or_watched": [], "threats_to_children_or_pets": False,
    "controlling_behaviour": False, "substance_misuse": False, "own_fear": "not_afraid",
}
SEVEN = CALM | {"threatened_to_kill": True, "weapon_access": True,  # 3 + 2
                "controlling_behaviour": True}  # + 2 = 7
FIFTEEN = CALM | {"violence_trend": "worse", "threatened_to_kill": True,  # 3 + 3
                  "weapon_threat": True, "separation": "recent",  # + 3 + 2
                  "followed_or_watched": ["turns_up", "repeated_contact"],  # + 1 + 1
                  "own_fear": "a_little", "substance_misuse": True}  # + 1 + 1 = 15
TWENTY_TWO = FIFTEEN | {"service_contacts": 2,  # band 1-2: + 1
                        "own_fear": "very",  # 3 instead of 1: + 2
                        "weapon_access": True, "threats_to_children_or_pets": True}  # + 2 + 2
EVERYTHING = {
    "violence_trend": "worse", "threatened_to_kill": True, "breathing_restricted": True,
    "weapon_access": True, "weapon_threat": True, "separation": "recent",
    "followed_or_watched": ["watches_through_others", "turns_up", "tracks_location",
                            "repeated_contact"],
    "threats_to_children_or_pets": True, "controlling_behaviour": True,
    "substance_misuse": True, "service_contacts": 100, "own_fear": "very",
}


@pytest.mark.parametrize(
    ("answers", "expected_score", "expected_level"),
    [
        (CALM, 0, "low"),
        (SEVEN, 7, "low"),  # the top of "low"
        (SEVEN | {"substance_misuse": True}, 8, "elevated"),  # the bottom of "elevated"
        (FIFTEEN, 15, "elevated"),
        (FIFTEEN | {"service_contacts": 1}, 16, "high"),
        (TWENTY_TWO, 22, "high"),
        (TWENTY_TWO | {"service_contacts": 3}, 23, "severe"),  # band 3+: 2 instead of 1
        (EVERYTHING | {"breathing_restricted": False}, 27, "severe"),
        (EVERYTHING, 31, "severe"),
    ],
)
def test_example_scores_by_hand(answers: dict[str, Any], expected_score: int,
                                expected_level: str) -> None:
    result = score(EXAMPLE, answers)
    assert result.score == expected_score and isinstance(result.score, Decimal)
    assert result.level == result.score_level == expected_level
    assert result.is_highest_level == (expected_level == "severe")
    assert result.max_score == 31
    assert result.complete and result.missing_required == ()
    assert sum(result.points.values()) == result.score


def test_number_bands_by_hand() -> None:
    points = [score(EXAMPLE, CALM | {"service_contacts": count}).points["service_contacts"]
              for count in (0, 1, 2, 3, 100)]
    assert points == [0, 1, 1, 2, 2]


def test_a_critical_item_alone_forces_the_highest_level() -> None:
    result = score(EXAMPLE, CALM | {"breathing_restricted": True})
    assert result.score == 4 and result.score_level == "low"
    assert result.level == "severe" and result.is_highest_level
    assert result.triggered_critical_items == ("breathing_restricted",)
    assert score(EXAMPLE, EVERYTHING).triggered_critical_items == ("breathing_restricted",)
    assert score(EXAMPLE, CALM).triggered_critical_items == ()


def test_a_zero_weight_critical_item_still_triggers() -> None:
    result = score(TINY, {"a": False, "b": False, "c": "x", "e": True})
    assert (result.score, result.score_level, result.level) == (0, "low", "high")
    assert result.triggered_critical_items == ("e",)


@pytest.mark.parametrize(
    ("answers", "expected_score", "expected_level"),
    [
        ({"a": True, "b": True, "c": "x"}, Decimal("1.5"), "low"),  # 1 + 0.5: top of "low"
        ({"a": False, "b": True, "c": "y"}, Decimal("2"), "medium"),  # 0.5 + 1.5: bottom
        ({"a": True, "b": True, "c": "x", "d": 3, "f": ["p"]},
         Decimal("3.5"), "medium"),  # 1 + 0.5 + 1.5 + 0.5: top of "medium"
        ({"a": True, "b": True, "c": "y", "d": 3, "f": ["q", "p"]}, Decimal("5"), "high"),
        ({"a": True, "b": True, "c": "y", "d": 4, "e": False, "f": ["p", "q"]},
         Decimal("5.5"), "high"),
    ],
)
def test_decimal_weights_land_exactly_on_thresholds(
    answers: dict[str, Any], expected_score: Decimal, expected_level: str
) -> None:
    result = score(TINY, {"e": False} | answers)
    assert result.score == expected_score
    assert result.level == expected_level


def test_no_float_surprises() -> None:
    """0.1 + 0.2 is 0.30000000000000004 in floating point, which would miss the level."""
    data = tiny_data()
    data["items"] = [{"id": "tenth", "type": "yes_no", "text": "T?", "weight": 0.1},
                     {"id": "fifth", "type": "yes_no", "text": "F?", "weight": 0.2}]
    data["levels"] = [{"name": "low", "min": 0, "max": 0.2},
                      {"name": "exactly", "min": 0.3, "max": 0.3}]
    instrument = parse_instrument(data)
    result = score(instrument, {"tenth": True, "fifth": True})
    assert result.score == Decimal("0.3") and str(result.score) == "0.3"
    assert result.level == "exactly"


def test_answers_are_normalised() -> None:
    result = score(EXAMPLE, CALM | {
        "threatened_to_kill": "yes", "weapon_access": "no", "service_contacts": 2.0,
        "followed_or_watched": ("repeated_contact", "turns_up"),
    })
    assert result.answers["threatened_to_kill"] is True
    assert result.answers["weapon_access"] is False
    assert type(result.answers["service_contacts"]) is int
    assert result.answers["service_contacts"] == 2
    assert result.answers["followed_or_watched"] == ("turns_up", "repeated_contact")
    assert list(result.answers) == [item.id for item in EXAMPLE.items]


# --- answers that do not fit -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"colour": "red"}, "answers.colour: is not an item of example-safety-screen version 1.0"),
        ({"threatened_to_kill": 1}, "answers.threatened_to_kill: must be true or false"),
        ({"threatened_to_kill": "maybe"}, "answers.threatened_to_kill: must be true or false"),
        ({"own_fear": 2}, "answers.own_fear: must be an option value, one of: not_afraid, "
                          "a_little, quite, very"),
        ({"own_fear": "terrified"}, "answers.own_fear: is not an option; must be one of: "
                                    "not_afraid, a_little, quite, very"),
        ({"followed_or_watched": "turns_up"},
         "answers.followed_or_watched: must be a list of option values (empty when none apply)"),
        ({"followed_or_watched": ["turns_up", "phones_work"]},
         "answers.followed_or_watched: lists a value that is not an option"),
        ({"followed_or_watched": ["turns_up", "turns_up"]},
         "answers.followed_or_watched: lists an option more than once"),
        ({"followed_or_watched": [1]}, "answers.followed_or_watched: must list option values"),
        ({"service_contacts": "3"}, "answers.service_contacts: must be a whole number"),
        ({"service_contacts": 2.5}, "answers.service_contacts: must be a whole number"),
        ({"service_contacts": True}, "answers.service_contacts: must be a whole number"),
        ({"service_contacts": float("nan")}, "answers.service_contacts: must be a whole number"),
        ({"service_contacts": Decimal("sNaN")}, "answers.service_contacts: must be a whole number"),
        ({"service_contacts": Decimal("3")}, None),
        ({"service_contacts": -1}, "answers.service_contacts: must be from 0 to 100"),
        ({"service_contacts": 101}, "answers.service_contacts: must be from 0 to 100"),
    ],
)
def test_answers_that_do_not_fit_name_the_item(
    change: dict[str, Any], expected: str | None
) -> None:
    if expected is None:  # the control: a fitting answer of that shape
        score(EXAMPLE, CALM | change)
        return
    messages = answer_problems(EXAMPLE, CALM | change)
    assert len(messages) == 1 and messages[0].startswith(expected)


def test_every_answer_problem_is_reported_once_and_values_are_not_echoed() -> None:
    secret = "12 Elm Street, flat 3"  # an answer may be personal data: never repeat it
    answers = CALM | {"own_fear": secret, "separation": secret, "weapon_access": secret,
                      "unknown_item": secret, secret: True}
    del answers["violence_trend"]
    with pytest.raises(InstrumentError) as caught:
        score(EXAMPLE, answers)
    error = caught.value
    assert error.detail == "The answers do not fit the risk instrument."
    assert [problem.path for problem in error.problems] == [
        "answers.unknown_item", "answers",  # unknown keys first, then in the items' order
        "answers.violence_trend", "answers.weapon_access", "answers.separation",
        "answers.own_fear",
    ]
    assert secret not in str(error) and "Elm" not in json.dumps(error.to_invalid().errors)
    fields = {e["field"]: e["type"] for e in error.to_invalid(root_field="answers").errors or []}
    assert fields["answers.violence_trend"] == "missing"
    assert fields["answers.unknown_item"] == "unknown_item"


def test_missing_required_answers_are_refused_unless_partial() -> None:
    answers = {key: value for key, value in SEVEN.items()
               if key not in ("own_fear", "separation")} | {"violence_trend": None}
    assert answer_problems(EXAMPLE, answers) == [
        "answers.violence_trend: is required", "answers.separation: is required",
        "answers.own_fear: is required",
    ]
    result = score(EXAMPLE, answers, partial=True)
    assert result.score == 7 and result.level == "low"
    assert result.missing_required == ("violence_trend", "separation", "own_fear")
    assert not result.complete
    assert "violence_trend" not in result.answers
    assert "service_contacts" not in result.missing_required  # optional, not missing


def test_partial_scoring_still_refuses_bad_answers() -> None:
    assert answer_problems(EXAMPLE, {"own_fear": "terrified"}, partial=True) == [
        "answers.own_fear: is not an option; must be one of: not_afraid, a_little, quite, very"
    ]
    empty = score(EXAMPLE, {}, partial=True)
    assert empty.score == 0 and empty.level == "low"
    assert len(empty.missing_required) == 11


def test_answers_must_be_a_mapping() -> None:
    assert answer_problems(EXAMPLE, [("own_fear", "very")]) == [
        "answers: must be a mapping of item id to answer"
    ]


# --- registry --------------------------------------------------------------------------------


def with_version(version: str, **changes: Any) -> Instrument:
    return parse_instrument(tiny_data() | {"version": version} | changes)


def test_registry_orders_versions_and_refuses_a_changed_definition() -> None:
    registry = InstrumentRegistry([with_version(v) for v in ("1.9", "1.10", "2.0-draft", "1")])
    registry.add(with_version("1.9"))  # the same definition again: harmless
    assert registry.versions("tiny-fixture") == ["1", "1.9", "1.10", "2.0-draft"]
    assert registry.get("tiny-fixture").version == "2.0-draft"
    registry.add(with_version("2.0"))
    assert registry.get("tiny-fixture").version == "2.0"
    assert registry.get("tiny-fixture", 1).version == "1"
    with pytest.raises(Conflict):
        registry.add(with_version("1.9", name="Tiny fixture, edited"))
    with pytest.raises(NotFound):
        registry.get("tiny-fixture", "3")
    assert len(registry) == 5
    assert [found.version for found in registry] == ["1", "1.9", "1.10", "2.0-draft", "2.0"]


# --- properties ------------------------------------------------------------------------------

WEIGHTS = st.one_of(st.integers(0, 6),
                    st.sampled_from([Decimal("0.5"), Decimal("1.5"), Decimal("0.25"),
                                     Decimal("0.1"), Decimal("2.75")]))


def fraction_gcd(values: list[Fraction]) -> Fraction:
    result = Fraction(0)
    for value in values:
        a, b = result, value
        while b:
            a, b = b, a % b
        result = a
    return result


def item_max_and_weights(item: dict[str, Any]) -> tuple[Fraction, list[Fraction]]:
    """Computed here again, independently of the engine."""
    if item["type"] == "yes_no":
        weights = [Fraction(item["weight"])]
        return weights[0], weights
    if item["type"] in ("choice", "multi_choice"):
        weights = [Fraction(option["weight"]) for option in item["options"]]
        return (max(weights) if item["type"] == "choice" else sum(weights)), weights
    if "per_unit" in item:
        return Fraction(item["per_unit"]) * item["max"], [Fraction(item["per_unit"])]
    weights = [Fraction(band["weight"]) for band in item["bands"]]
    return max(weights), weights


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    kinds = draw(st.lists(st.sampled_from(["yes_no", "choice", "multi_choice", "per_unit",
                                           "bands"]), min_size=1, max_size=6))
    items_: list[dict[str, Any]] = []
    for index, kind in enumerate(kinds):
        item: dict[str, Any] = {"id": f"q{index}", "text": f"Question {index}?",
                                "required": draw(st.booleans())}
        if kind == "yes_no":
            item |= {"type": "yes_no", "weight": draw(WEIGHTS), "critical": draw(st.booleans())}
        elif kind in ("choice", "multi_choice"):
            count = draw(st.integers(2 if kind == "choice" else 1, 4))
            item |= {"type": kind, "options": [
                {"value": f"o{j}", "label": f"Option {j}", "weight": draw(WEIGHTS)}
                for j in range(count)]}
        elif kind == "per_unit":
            item |= {"type": "number", "min": 0, "max": draw(st.integers(1, 10)),
                     "per_unit": draw(WEIGHTS)}
        else:
            low = draw(st.integers(-3, 3))
            high = low + draw(st.integers(1, 10))
            starts = [low, *sorted(draw(st.sets(st.integers(low + 1, high), max_size=3)))]
            bands = []
            for j, start in enumerate(starts):
                band: dict[str, Any] = {"min": start, "weight": draw(WEIGHTS)}
                if j < len(starts) - 1:
                    band["max"] = starts[j + 1] - 1
                elif draw(st.booleans()):
                    band["max"] = high
                bands.append(band)
            item |= {"type": "number", "min": low, "max": high, "bands": bands}
        items_.append(item)
    highest = sum((item_max_and_weights(item)[0] for item in items_), Fraction(0))
    if highest == 0:
        items_.append({"id": "extra", "type": "yes_no", "text": "Extra?", "weight": 1})
        highest = Fraction(1)
    step = fraction_gcd([w for item in items_ for w in item_max_and_weights(item)[1] if w])
    grid = int(highest / step)
    cuts = sorted(draw(st.sets(st.integers(1, grid), min_size=1, max_size=min(4, grid))))
    starts = [Fraction(0), *(step * cut for cut in cuts)]
    levels: list[dict[str, Any]] = []
    for j, start in enumerate(starts):
        level: dict[str, Any] = {"name": f"level-{j}", "min": as_decimal(start)}
        if j < len(starts) - 1:
            level["max"] = as_decimal(starts[j + 1] - step)
        elif draw(st.booleans()):
            level["max"] = as_decimal(highest)
        levels.append(level)
    scoring: dict[str, Any] = {"method": "sum"}
    if draw(st.booleans()):
        scoring["max_score"] = as_decimal(highest)
    return {"id": "generated", "version": draw(st.sampled_from(["1", "0.3.1", 4])),
            "name": "Generated", "licence": "Test data.", "language": "en",
            "items": items_, "scoring": scoring, "levels": levels}


def as_decimal(value: Fraction) -> Decimal:
    result = Decimal(value.numerator) / Decimal(value.denominator)
    assert Fraction(result) == value
    return result


def instruments() -> st.SearchStrategy[Instrument]:
    return st.one_of(st.just(EXAMPLE), st.just(TINY), definitions().map(parse_instrument))


def answer_for(item: Any) -> st.SearchStrategy[Any]:
    if isinstance(item, YesNoItem):
        return st.sampled_from([True, False, "yes", "no"])
    values = [option.value for option in getattr(item, "options", ())]
    if isinstance(item, ChoiceItem):
        return st.sampled_from(values)
    if isinstance(item, MultiChoiceItem):
        return st.lists(st.sampled_from(values), unique=True)
    return st.integers(item.min, item.max)


@st.composite
def answer_sets(draw: st.DrawFn, instrument: Instrument, partial: bool) -> dict[str, Any]:
    answers = {}
    for item in instrument.items:
        if (partial or not item.required) and draw(st.booleans()):
            continue
        answers[item.id] = draw(answer_for(item))
    return answers


@st.composite
def scored(draw: st.DrawFn) -> tuple[Instrument, dict[str, Any], bool]:
    instrument = draw(instruments())
    partial = draw(st.booleans())
    return instrument, draw(answer_sets(instrument, partial)), partial


@SETTINGS
@given(definitions())
def test_generated_definitions_load_and_round_trip(data: dict[str, Any]) -> None:
    instrument = parse_instrument(data)
    assert Fraction(instrument.max_score) == sum(
        (item_max_and_weights(item)[0] for item in data["items"]), Fraction(0))
    for syntax in ("yaml", "json"):
        text = dump_instrument(instrument, syntax=syntax)  # type: ignore[arg-type]
        again = load_instrument(text)
        assert again == instrument
        assert dump_instrument(again, syntax=syntax) == text  # type: ignore[arg-type]
    assert parse_instrument(copy.deepcopy(instrument.model_dump())) == instrument


@SETTINGS
@given(scored())
def test_score_is_within_bounds_and_inside_its_level(
    case: tuple[Instrument, dict[str, Any], bool],
) -> None:
    instrument, answers, partial = case
    result = score(instrument, answers, partial=partial)
    assert isinstance(result, Assessment) and isinstance(result.score, Decimal)
    assert 0 <= result.score <= instrument.max_score == result.max_score
    by_score = next(level for level in instrument.levels if level.name == result.score_level)
    assert by_score.min <= result.score and (by_score.max is None or result.score <= by_score.max)
    assert [level.name for level in instrument.levels if level.contains(result.score)] == [
        result.score_level
    ]
    if result.triggered_critical_items:
        assert result.level == instrument.highest_level.name
    else:
        assert result.level == result.score_level
    assert result.is_highest_level == (result.level == instrument.highest_level.name)
    assert result.complete == (not partial or not result.missing_required)


@SETTINGS
@given(scored(), st.data())
def test_a_yes_never_lowers_the_score_or_the_level(
    case: tuple[Instrument, dict[str, Any], bool], data: st.DataObject
) -> None:
    instrument, answers, _ = case
    yes_no = [item for item in instrument.items if isinstance(item, YesNoItem)]
    if not yes_no:
        return
    item = data.draw(st.sampled_from(yes_no))
    before = score(instrument, answers | {item.id: data.draw(st.sampled_from([False, None]))},
                   partial=True)
    after = score(instrument, answers | {item.id: True}, partial=True)
    assert after.score == before.score + item.weight
    assert instrument.level_rank(after.level) >= instrument.level_rank(before.level)
    assert instrument.level_rank(after.score_level) >= instrument.level_rank(before.score_level)


@SETTINGS
@given(instruments())
def test_the_highest_answers_reach_the_maximum(instrument: Instrument) -> None:
    answers: dict[str, Any] = {}
    for item in instrument.items:
        if isinstance(item, YesNoItem):
            answers[item.id] = True
        elif isinstance(item, ChoiceItem):
            answers[item.id] = max(item.options, key=lambda option: option.weight).value
        elif isinstance(item, MultiChoiceItem):
            answers[item.id] = [option.value for option in item.options]
        else:
            assert isinstance(item, NumberItem)
            answers[item.id] = item.max if item.per_unit is not None else next(
                value for value in range(item.min, item.max + 1)
                if item.points(value) == item.max_points())
    result = score(instrument, answers)
    assert result.score == instrument.max_score
    assert result.level == instrument.highest_level.name


@SETTINGS
@given(st.lists(st.sampled_from([0, 1, 2, 3, Decimal("0.5"), Decimal("1.5")]),
                min_size=1, max_size=5),
       st.data())
def test_accepted_levels_cover_every_reachable_score_exactly_once(
    weights: list[Decimal], data: st.DataObject
) -> None:
    """Brute force over drawn, often broken, levels: a definition that is accepted puts
    every score its answers can produce in exactly one level; one that is refused is
    refused for its levels only (its items are fine)."""
    total = sum(weights, Decimal(0))
    halves = [Decimal(n) / 2 for n in range(int(total * 2) + 2)]  # 0 to total + 0.5
    starts = sorted(data.draw(st.sets(st.sampled_from(halves), min_size=2, max_size=4)))
    tidy = data.draw(st.booleans())  # contiguous on a 0.5 grid, from 0 to the end
    if tidy:
        starts[0] = Decimal(0)
    levels: list[dict[str, Any]] = []
    for j, start in enumerate(starts):
        level: dict[str, Any] = {"name": f"l{j}", "min": start}
        last = j == len(starts) - 1
        if tidy and not last:
            level["max"] = starts[j + 1] - Decimal("0.5")
        elif not last:
            level["max"] = data.draw(st.sampled_from(halves))
        elif data.draw(st.booleans()):
            level["max"] = total if tidy else data.draw(st.sampled_from(halves))
        levels.append(level)
    definition = tiny_data() | {"levels": levels, "items": [
        {"id": f"q{index}", "type": "yes_no", "text": "Q?", "weight": weight}
        for index, weight in enumerate(weights)]}
    try:
        instrument = parse_instrument(definition)
    except InstrumentError as error:
        assert all(problem.path.startswith("levels") for problem in error.problems)
        return
    for pattern in itertools.product([False, True], repeat=len(weights)):
        result = score(instrument, {f"q{index}": yes for index, yes in enumerate(pattern)})
        assert sum(level.contains(result.score) for level in instrument.levels) == 1
