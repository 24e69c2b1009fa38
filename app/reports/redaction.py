"""Redaction profiles: what a report hides, applied to the data before anything renders it.

Two kinds of hiding, both done here on plain data (dicts, lists, strings) so that a hidden
value never reaches a template:

- fields withheld where they are: a witness's contact details or name, the other person's
  identifiers — replaced by a label saying what was withheld;
- values scrubbed wherever they occur: the client's address, the agency's confidential
  shelter addresses, the client's phone numbers and e-mail addresses, children's names,
  witnesses' details — every occurrence in every text (an incident's place, the client's
  account, a correction's before and after) is replaced by a label, case-insensitively
  and whatever the spacing. An address is also scrubbed line by line (each line with a
  number: a street and house number, a postcode), so a street named alone is caught too.

:func:`leftovers` is the last check before rendering: it searches the redacted data for
every hidden value once more, and the build fails rather than render one.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

PROFILES: dict[str, tuple[str, ...]] = {
    "none": (),
    "safe_location": ("client_address", "shelter_locations", "client_contact_details"),
    "standard": ("client_address", "shelter_locations", "client_contact_details",
                 "witness_contacts", "children_names"),
    "strict": ("client_address", "shelter_locations", "client_contact_details",
               "witness_contacts", "children_names", "witness_names",
               "respondent_identifiers"),
}
LABELS = {
    "client_address": "[address withheld]",
    "shelter_locations": "[location withheld]",
    "client_contact_details": "[contact details withheld]",
    "witness_contacts": "[contact details withheld]",
    "witness_names": "[name withheld]",
    "children_names": "[child's name withheld]",
    "respondent_identifiers": "[identifier withheld]",
}
DESCRIPTIONS = {
    "client_address": "the client's current address",
    "shelter_locations": "the locations of the agency's confidential shelters",
    "client_contact_details": "the client's phone numbers and e-mail addresses",
    "witness_contacts": "witnesses' contact details",
    "witness_names": "witnesses' names",
    "children_names": "children's names",
    "respondent_identifiers": "the other person's phone numbers, accounts and addresses",
}
# Parts of an address shorter than this are not scrubbed on their own ("12").
MIN_PART = 4


def hidden_kinds(profile: str, also_hide: Iterable[str]) -> tuple[str, ...]:
    """Every kind of data a report with this profile (and these additions) hides."""
    chosen = set(PROFILES[profile]) | set(also_hide)
    return tuple(kind for kind in LABELS if kind in chosen)


def address_parts(address: str) -> list[str]:
    """An address, and each of its lines or comma-separated parts that locates a place on
    its own: one with a number (a street and house number, a postcode). A town name alone
    is left, or every police force and court of the town would be scrubbed with it."""
    parts = [address.strip()]
    parts += [p.strip() for p in re.split(r"[\n,;]", address)
              if len(p.strip()) >= MIN_PART and re.search(r"\d", p)]
    return [p for p in dict.fromkeys(parts) if p]


def _pattern(value: str) -> str:
    words = [re.escape(w) for w in value.split()]
    body = r"\s+".join(words)
    # Whole words only where the value starts or ends with a word character, so that a
    # child called "Al" is not scrubbed out of "also".
    start = r"(?<!\w)" if re.match(r"\w", value) else ""
    return start + body + _end(value)


def _end(value: str) -> str:
    return r"(?!\w)" if re.search(r"\w$", value) else ""


@dataclass
class Redactor:
    """Scrubs the values of each hidden kind from any text given to it."""

    values: dict[str, list[str]] = field(default_factory=dict)  # kind -> values

    def add(self, kind: str, values: Iterable[str | None]) -> None:
        found = [v.strip() for v in values if v and v.strip()]
        if found:
            self.values.setdefault(kind, []).extend(found)

    def _compiled(self) -> list[tuple[re.Pattern[str], str]]:
        pairs = [(value, LABELS[kind]) for kind, values in self.values.items()
                 for value in values]
        # Longest first: a whole address before one of its lines.
        pairs.sort(key=lambda pair: len(pair[0]), reverse=True)
        return [(re.compile(_pattern(value), re.IGNORECASE), label) for value, label in pairs]

    def scrub(self, data: Any) -> Any:
        """``data`` with every hidden value replaced by its label (a new structure)."""
        compiled = self._compiled()
        if not compiled:
            return data
        # First, which texts hold any of the values at all (most texts of a report hold
        # none): one search over all of them. Only those go through every value in turn,
        # longest first, as before.
        everything = [value for values in self.values.values() for value in values]
        holding = _holding(_any_of(everything), list(_strings(data)))
        seen = iter(range(1 << 62))

        def walk(item: Any) -> Any:
            if isinstance(item, str):
                if next(seen) not in holding:
                    return item
                for pattern, label in compiled:
                    item = pattern.sub(label, item)
                return item
            if isinstance(item, dict):
                return {key: walk(value) for key, value in item.items()}
            if isinstance(item, list | tuple):
                return [walk(value) for value in item]
            return item

        return walk(data)

    def leftovers(self, data: Any) -> list[str]:
        """The kinds whose values can still be found in ``data`` (should be none)."""
        texts = list(_strings(data))
        return [kind for kind, values in self.values.items()
                if _holding(_any_of(values), texts)]


def _strings(item: Any) -> Iterator[str]:
    """Every text in ``item`` (dict values, list items), in the order ``scrub`` walks."""
    if isinstance(item, str):
        yield item
    elif isinstance(item, dict):
        for value in item.values():
            yield from _strings(value)
    elif isinstance(item, list | tuple):
        for value in item:
            yield from _strings(value)


# Joins the texts for one search over all of them. No value can match across it: a value's
# pattern matches only its own characters and whitespace, and its word boundaries see the
# separator as the start or end of a text.
SEPARATOR = "\x00"


def _holding(pattern: re.Pattern[str], texts: list[str]) -> set[int]:
    """The indexes of the texts in which ``pattern`` finds something."""
    if any(SEPARATOR in text for text in texts) or SEPARATOR in pattern.pattern:
        return {n for n, text in enumerate(texts) if pattern.search(text)}
    starts, at = [], 0
    for text in texts:
        starts.append(at)
        at += len(text) + 1
    return {bisect.bisect_right(starts, found.start()) - 1
            for found in pattern.finditer(SEPARATOR.join(texts))}


def _any_of(values: Iterable[str]) -> re.Pattern[str]:
    """One pattern that finds a text where the pattern of any of ``values`` finds it (none:
    never). Each alternative starts with the value's first character and checks the word
    boundary before it just after (``x(?<!\\w.)`` rather than ``(?<!\\w)x``): the same
    matches, but the regular expression engine can then skip the positions where no value
    starts — about three times as fast over a long report."""
    sources = []
    for value in values:
        words = value.split()
        body = re.escape(words[0][0])
        if re.match(r"\w", value):
            body += r"(?<!\w(?s:.))"
        body += re.escape(words[0][1:]) + "".join(r"\s+" + re.escape(w) for w in words[1:])
        sources.append(f"(?:{body}{_end(value)})")
    return re.compile("|".join(sources) if sources else r"(?!)", re.IGNORECASE)


def withhold_fields(state: dict[str, Any], hidden: tuple[str, ...]) -> dict[str, Any]:
    """An incident revision's content with the withheld fields replaced by their labels."""
    out = dict(state)
    witnesses = []
    for number, witness in enumerate(out.get("witnesses") or [], start=1):
        witness = dict(witness)
        if "witness_names" in hidden and witness.get("name"):
            witness["name"] = f"Witness {number} {LABELS['witness_names']}"
        if "witness_contacts" in hidden and witness.get("contact"):
            witness["contact"] = LABELS["witness_contacts"]
        witnesses.append(witness)
    out["witnesses"] = witnesses
    if "respondent_identifiers" in hidden and out.get("respondent_identifiers"):
        out["respondent_identifiers"] = [
            {"kind": item.get("kind", "other"), "value": LABELS["respondent_identifiers"],
             "platform": ""} for item in out["respondent_identifiers"]]
    return out
