"""The redactor: one search per text first, then every hidden value in turn — the same
result as trying every value on every text, which a property test checks."""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.reports.redaction import Redactor, _pattern

VALUES = {
    "client_address": ["7 Imaginary Close, Nowhere", "7 Imaginary Close", "NW1 9ZZ"],
    "children_names": ["Al", "Ann Smith"],
    "witness_names": ["Smith Street 5", "J. Doe-Fictional"],
    "client_contact_details": ["+44 7700 900456", "fictional@example.test"],
    "shelter_locations": ["Ayşe Yılmaz Evi", "Straße 5", "Kiel"],
}
# Texts are made of these: the values, near misses, other cases and scripts (a dotless ı,
# a long ſ, a Kelvin sign, a capital ẞ: the regular expressions' case-insensitive
# equivalences), whitespace of every kind, and the separator the one-pass search uses.
PIECES = [*(v for values in VALUES.values() for v in values), "also", "Alan", "ANN SMITH",
          "7  imaginary   close", "Street", " ", ", ", "\n", "\t", "the client said", "(",
          ")", "Smith", "Ann", "900456", "x", "AYŞE YILMAZ EVİ", "ayşe yilmaz evi",
          "ſtraße 5", "STRAẞE 5", "Strasse 5", "\u212aiel", "KİEL", "\x00", "é", "_"]


def redactor() -> Redactor:
    made = Redactor()
    for kind, values in VALUES.items():
        made.add(kind, values)
    return made


def every_value_on_every_text(made: Redactor, data: Any) -> Any:
    """The redactor as it was: each value tried on each text, longest first."""
    compiled = made._compiled()

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            for pattern, label in compiled:
                item = pattern.sub(label, item)
            return item
        if isinstance(item, dict):
            return {key: walk(value) for key, value in item.items()}
        if isinstance(item, list | tuple):
            return [walk(value) for value in item]
        return item

    return walk(data)


def kinds_found_one_by_one(made: Redactor, texts: list[str]) -> list[str]:
    return [kind for kind, values in made.values.items()
            if any(re.compile(_pattern(v), re.IGNORECASE).search(t)
                   for v in values for t in texts)]


texts = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)


@settings(max_examples=600, deadline=None)
@given(st.lists(texts, max_size=6))
def test_scrubbing_is_the_same_as_trying_every_value_on_every_text(found: list[str]) -> None:
    made = redactor()
    data = {"texts": found, "nested": {"more": list(reversed(found))}, "number": 3}
    assert made.scrub(data) == every_value_on_every_text(made, data)


@settings(max_examples=600, deadline=None)
@given(st.lists(texts, max_size=6))
def test_leftovers_are_the_same_as_searching_every_value(found: list[str]) -> None:
    made = redactor()
    assert made.leftovers({"texts": found}) == kinds_found_one_by_one(made, found)


@settings(max_examples=200, deadline=None)
@given(st.lists(texts, max_size=4), st.sampled_from(["Al\x00", "x\x00y", "Ann Smith"]))
def test_a_value_or_text_with_the_separator_is_searched_text_by_text(
        found: list[str], odd: str) -> None:
    made = redactor()
    made.add("witness_names", [odd])
    data = {"texts": found}
    assert made.scrub(data) == every_value_on_every_text(made, data)
    assert made.leftovers(data) == kinds_found_one_by_one(made, found)


def test_examples() -> None:
    made = redactor()
    scrubbed = made.scrub({"a": "Seen at 7 Imaginary Close, Nowhere by Al, also Alan.",
                           "b": "Nothing hidden here.", "c": ["call +44 7700 900456"]})
    assert scrubbed == {"a": "Seen at [address withheld] by [child's name withheld], also Alan.",
                        "b": "Nothing hidden here.", "c": ["call [contact details withheld]"]}
    assert made.leftovers(scrubbed) == []
    assert made.leftovers({"x": "a note for ann smith"}) == ["children_names"]
    assert Redactor().scrub({"a": "as it was"}) == {"a": "as it was"}
    assert Redactor().leftovers({"a": "as it was"}) == []
