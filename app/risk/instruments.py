"""Risk instruments as data: the definition format, its validation, a registry and scoring.

A risk instrument (a danger or lethality screen) is a versioned YAML or JSON document,
not code: agencies hold different instruments under different licences, and add their
own as text. A definition names its items (questions), how answers turn into points,
how points combine into a score, and the ordered levels the score falls into::

    format: 1                        # this file format; optional, 1 is the only one
    id: example-safety-screen        # slug; (id, version) names one definition for ever
    version: "1.0"                   # "1", "1.2", "1.2.3", "2.0-draft" or a whole number
    name: Example safety screen
    description: ...                 # optional
    licence: ...                     # required: who may use it, on what terms
    source: ...                      # optional: where it comes from
    language: en                     # BCP 47 tag
    items:
      - id: threats                  # lowercase letters, digits, _ and -
        text: Has the other person threatened you?
        help: ...                    # optional guidance for the advocate
        type: yes_no                 # yes_no | choice | multi_choice | number
        weight: 3                    # yes_no: points for "yes" ("no" scores 0)
        critical: true               # yes_no only: "yes" alone forces the highest level
        required: true               # default true
      - id: fear
        type: choice                 # one option; its weight counts
        options: [{value: not_afraid, label: Not afraid, weight: 0}, ...]
      - id: stalking
        type: multi_choice           # any number of options; their weights add up
        options: [...]
      - id: incidents
        type: number                 # a whole number from min to max, scored either
        min: 0                       #   per_unit: points per unit, or
        max: 50                      #   bands: [{min: 0, max: 0, weight: 0},
        bands: [...]                 #           {min: 1, max: 3, weight: 1}, {min: 4, weight: 2}]
    scoring:
      method: sum                    # the only method so far: the points add up
      max_score: 31                  # optional check: must equal what the items add up to
    levels:                          # lowest first; the last is the highest ("urgent")
      - {name: low, label: Low, min: 0, max: 7}
      - {name: elevated, min: 8, max: 15}
      - {name: severe, min: 16}      # the last level may leave out max (open-ended)

Numbers are exact: every weight, threshold and score is a :class:`~decimal.Decimal`, so
0.1 + 0.2 is 0.3 and a score lands on a threshold exactly. Weights and thresholds are
non-negative, finite, at most 1,000,000 and have at most four decimal places; number
answers and number bounds are whole numbers. Levels must cover every score the items
can add up to, from 0 to the maximum, without gaps or overlaps: with integer weights
``0-7`` and ``8-15`` touch; with a weight of 0.5 a score of 7.5 is possible, so the
next level must start at 7.5.

Every problem, in a definition or in a set of answers, is reported at once as an
:class:`InstrumentError` holding ``path: message`` entries, which
:meth:`InstrumentError.to_invalid` turns into the API's field errors. Answer errors
never repeat the value given (it may be personal data).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from os import PathLike
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from app.core.errors import Conflict, Invalid, NotFound

FORMAT_VERSION = 1
MAX_DEFINITION_CHARS = 256_000
MAX_DECIMAL_PLACES = 4
MAX_NUMBER = Decimal(1_000_000)
DATA_PACKAGE = "app.risk"
DATA_FOLDER = "data"

Syntax = Literal["yaml", "json"]
Answer = bool | str | int | tuple[str, ...]

_INSTRUMENT_ID = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
_NAME = re.compile(r"[a-z0-9]+(?:[_-][a-z0-9]+)*")
_VERSION = re.compile(r"\d+(?:\.\d+){0,2}(?:[-+][0-9A-Za-z.-]+)?")
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{1,8})*")
_YAML_BOOL_HINT = " (quote it: YAML reads yes, no, on and off as true or false)"


# --- errors ------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstrumentProblem:
    """One problem: where (``items[3].options[1].weight``, ``answers.fear``), what, a kind."""

    path: str
    message: str
    type: str = "invalid"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class InstrumentError(Exception):
    """A definition, or a set of answers, that does not hold; every problem is listed."""

    def __init__(
        self,
        problems: Sequence[InstrumentProblem],
        detail: str = "The risk instrument definition is invalid.",
    ) -> None:
        self.problems = tuple(problems)
        self.detail = detail
        super().__init__(str(self))

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception pickling would pass str(self) back as ``problems`` (a task result).
        return (type(self), (self.problems, self.detail))

    @property
    def messages(self) -> list[str]:
        return [str(problem) for problem in self.problems]

    def __str__(self) -> str:
        return "\n".join([self.detail, *("  " + message for message in self.messages)])

    def to_invalid(self, *, location: str = "body", root_field: str = "definition") -> Invalid:
        """The API's 422: one field error per problem, ``field`` being the problem's path."""
        return Invalid(
            self.detail,
            errors=[
                {
                    "field": problem.path or root_field,
                    "location": location,
                    "message": problem.message,
                    "type": problem.type,
                }
                for problem in self.problems
            ],
        )


def _path(loc: Iterable[str | int]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _inconsistent(problems: list[tuple[tuple[str | int, ...], str, str]]) -> PydanticCustomError:
    """Cross-field problems, carried inside pydantic's error so its location is kept."""
    return PydanticCustomError("inconsistent", "inconsistent definition", {"problems": problems})


# --- value types ---------------------------------------------------------------------------


def _number(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise PydanticCustomError("number_type", "must be a number")
    # str() first: the float 0.1 becomes Decimal("0.1"), not 0.1000000000000000055...
    number = Decimal(value) if isinstance(value, int) else Decimal(str(value))
    if not number.is_finite():
        raise PydanticCustomError("number_finite", "must be a finite number")
    if number < 0:
        raise PydanticCustomError("number_negative", "must not be negative")
    if number > MAX_NUMBER:
        raise PydanticCustomError("number_too_large", f"must be at most {MAX_NUMBER}")
    exponent = number.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        raise PydanticCustomError(
            "number_precision", f"must have at most {MAX_DECIMAL_PLACES} decimal places"
        )
    return _exact(number)


def _exact(number: Decimal) -> Decimal:
    """Integral values as plain integers (``8``, not ``8.0`` or ``8E+0``), others normalised."""
    return Decimal(int(number)) if number == number.to_integral_value() else number.normalize()


def _whole(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PydanticCustomError("whole_number_type", "must be a whole number")
    if abs(value) > MAX_NUMBER:
        raise PydanticCustomError("number_too_large", f"must be between -{MAX_NUMBER} and "
                                                      f"{MAX_NUMBER}")
    return value


def _name_check(pattern: re.Pattern[str], rule: str) -> BeforeValidator:
    def check(value: Any) -> str:
        if isinstance(value, bool):
            raise PydanticCustomError("string_type", "must be a string" + _YAML_BOOL_HINT)
        if not isinstance(value, str):
            raise PydanticCustomError("string_type", "must be a string")
        if len(value) > 64 or not pattern.fullmatch(value):
            raise PydanticCustomError("name_pattern", rule)
        return value

    return BeforeValidator(check)


def _version(value: Any) -> str:
    if isinstance(value, bool):
        raise PydanticCustomError("version_type", "must be a version such as \"1.0\" or 2")
    if isinstance(value, int):
        value = str(value)
    elif isinstance(value, float | Decimal):
        raise PydanticCustomError(
            "version_type", "must be quoted (YAML and JSON read 1.10 as the number 1.1)"
        )
    if not isinstance(value, str) or len(value) > 32 or not _VERSION.fullmatch(value):
        raise PydanticCustomError(
            "version_pattern",
            "must be a version such as \"1\", \"1.2\", \"1.2.3\" or \"2.0-draft\"",
        )
    return value


Number = Annotated[Decimal, BeforeValidator(_number)]
Whole = Annotated[int, BeforeValidator(_whole)]
InstrumentId = Annotated[
    str, _name_check(_INSTRUMENT_ID, "must be lowercase letters and digits joined by hyphens")
]
Name = Annotated[
    str, _name_check(_NAME, "must be lowercase letters and digits joined by _ or -")
]
Version = Annotated[str, BeforeValidator(_version)]
Language = Annotated[
    str, _name_check(_LANGUAGE, "must be a language tag such as en, es or pt-BR")
]
Label = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=4000)]


# --- the definition ------------------------------------------------------------------------


class _Definition(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ChoiceOption(_Definition):
    value: Name
    label: Label
    weight: Number


class NumberBand(_Definition):
    """Whole numbers from ``min`` to ``max`` (inclusive; the last band may leave out max)."""

    min: Whole
    max: Whole | None = None
    weight: Number


class _ItemBase(_Definition):
    id: Name
    text: Text
    help: Text | None = None
    required: StrictBool = True
    critical: StrictBool = False

    @field_validator("critical")
    @classmethod
    def _critical_only_on_yes_no(cls, critical: bool) -> bool:
        if critical and cls is not YesNoItem:
            raise PydanticCustomError(
                "critical_not_yes_no",
                "only yes_no items can be critical (\"yes\" to a critical item forces the "
                "highest level)",
            )
        return critical

    def max_points(self) -> Decimal:
        raise NotImplementedError

    def weights(self) -> list[Decimal]:
        """Every amount a score can grow by through this item (for the level checks)."""
        raise NotImplementedError

    def normalise(self, raw: Any) -> Answer:
        """The answer in canonical form, or :class:`_AnswerProblem`."""
        raise NotImplementedError

    def points(self, answer: Any) -> Decimal:
        raise NotImplementedError


class YesNoItem(_ItemBase):
    type: Literal["yes_no"]
    weight: Number

    def max_points(self) -> Decimal:
        return self.weight

    def weights(self) -> list[Decimal]:
        return [self.weight]

    def normalise(self, raw: Any) -> Answer:
        if isinstance(raw, bool):
            return raw
        if raw in ("yes", "no"):
            return raw == "yes"
        raise _AnswerProblem("must be true or false (or \"yes\" or \"no\")", "yes_no_type")

    def points(self, answer: Any) -> Decimal:
        return self.weight if answer else Decimal(0)


class _OptionsItem(_ItemBase):
    options: tuple[ChoiceOption, ...]

    @model_validator(mode="after")
    def _distinct_values(self) -> _OptionsItem:
        seen: dict[str, int] = {}
        problems = []
        for index, option in enumerate(self.options):
            if option.value in seen:
                problems.append((("options", index, "value"),
                                 f"duplicate value {option.value!r} (also options"
                                 f"[{seen[option.value]}])", "duplicate"))
            seen.setdefault(option.value, index)
        if problems:
            raise _inconsistent(problems)
        return self

    def weights(self) -> list[Decimal]:
        return [option.weight for option in self.options]

    def weight_of(self, value: str) -> Decimal:
        return next(option.weight for option in self.options if option.value == value)

    def _values_hint(self) -> str:
        return "one of: " + ", ".join(option.value for option in self.options)


class ChoiceItem(_OptionsItem):
    """One option is chosen; its weight counts."""

    type: Literal["choice"]
    options: tuple[ChoiceOption, ...] = Field(min_length=2, max_length=50)

    def max_points(self) -> Decimal:
        return max(option.weight for option in self.options)

    def normalise(self, raw: Any) -> Answer:
        if not isinstance(raw, str):
            raise _AnswerProblem("must be an option value, " + self._values_hint(), "choice_type")
        if raw not in {option.value for option in self.options}:
            raise _AnswerProblem("is not an option; must be " + self._values_hint(), "choice")
        return raw

    def points(self, answer: Any) -> Decimal:
        return self.weight_of(answer)


class MultiChoiceItem(_OptionsItem):
    """Any number of options (none included) are chosen; their weights add up."""

    type: Literal["multi_choice"]
    options: tuple[ChoiceOption, ...] = Field(min_length=1, max_length=50)

    def max_points(self) -> Decimal:
        return sum((option.weight for option in self.options), Decimal(0))

    def normalise(self, raw: Any) -> Answer:
        listed = isinstance(raw, Sequence | set | frozenset)
        if not listed or isinstance(raw, str | bytes | Mapping):
            raise _AnswerProblem("must be a list of option values (empty when none apply)",
                                 "multi_choice_type")
        chosen = list(raw)
        values = [option.value for option in self.options]
        if not all(isinstance(value, str) for value in chosen):
            raise _AnswerProblem("must list option values, " + self._values_hint(),
                                 "multi_choice_type")
        if any(value not in values for value in chosen):
            raise _AnswerProblem("lists a value that is not an option; options are "
                                 + ", ".join(values), "choice")
        if len(set(chosen)) != len(chosen):
            raise _AnswerProblem("lists an option more than once", "duplicate")
        return tuple(value for value in values if value in chosen)  # in the options' order

    def points(self, answer: Any) -> Decimal:
        return sum((self.weight_of(value) for value in answer), Decimal(0))


class NumberItem(_ItemBase):
    """A whole number from ``min`` to ``max``, scored per unit or by bands (one of the two)."""

    type: Literal["number"]
    min: Whole
    max: Whole
    per_unit: Number | None = None
    bands: tuple[NumberBand, ...] | None = Field(default=None, min_length=1, max_length=50)

    @model_validator(mode="after")
    def _consistent(self) -> NumberItem:
        problems: list[tuple[tuple[str | int, ...], str, str]] = []
        if self.max <= self.min:
            problems.append((("max",), f"must be above min ({self.min})", "range"))
        if (self.per_unit is None) == (self.bands is None):
            problems.append(((), "needs either per_unit (points per unit) or bands, not both "
                                 "and not neither", "scoring"))
        if self.per_unit is not None and self.min < 0:
            problems.append((("min",), "must not be negative when scoring per_unit", "range"))
        if self.bands is not None and not problems:
            problems += _band_problems(self.bands, self.min, self.max)
        if problems:
            raise _inconsistent(problems)
        return self

    def max_points(self) -> Decimal:
        if self.per_unit is not None:
            return _exact(self.per_unit * self.max)
        return max(band.weight for band in self.bands or ())

    def weights(self) -> list[Decimal]:
        if self.per_unit is not None:
            return [self.per_unit]
        return [band.weight for band in self.bands or ()]

    def normalise(self, raw: Any) -> Answer:
        if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
            raise _AnswerProblem("must be a whole number", "number_type")
        if not isinstance(raw, int):
            finite = raw.is_finite() if isinstance(raw, Decimal) else math.isfinite(raw)
            if not finite or raw != int(raw):
                raise _AnswerProblem("must be a whole number", "number_type")
            raw = int(raw)
        if not self.min <= raw <= self.max:
            raise _AnswerProblem(f"must be from {self.min} to {self.max}", "range")
        return raw

    def points(self, answer: Any) -> Decimal:
        if self.per_unit is not None:
            return _exact(self.per_unit * answer)
        return next(band.weight for band in self.bands or ()
                    if band.min <= answer <= (self.max if band.max is None else band.max))


def _band_problems(
    bands: tuple[NumberBand, ...], low: int, high: int
) -> list[tuple[tuple[str | int, ...], str, str]]:
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    if bands[0].min != low:
        problems.append((("bands", 0, "min"), f"the first band must start at min ({low})",
                         "coverage"))
    for index, band in enumerate(bands):
        last = index == len(bands) - 1
        if band.max is None and not last:
            problems.append((("bands", index, "max"), "is required (only the last band may "
                                                      "leave it out)", "missing"))
        elif band.max is not None and band.max < band.min:
            problems.append((("bands", index, "max"), "must not be below the band's min",
                             "range"))
        if last:
            if band.max is not None and band.max != high:
                problems.append((("bands", index, "max"), f"the last band must end at max "
                                                          f"({high}), or leave max out",
                                 "coverage"))
            continue
        after = bands[index + 1]
        if band.max is not None and after.min != band.max + 1:
            kind = "overlaps" if after.min <= band.max else "leaves a gap after"
            problems.append((("bands", index + 1, "min"),
                             f"must be {band.max + 1}: it {kind} bands[{index}] "
                             f"({band.min}-{band.max})", "coverage"))
    return problems


Item = Annotated[
    YesNoItem | ChoiceItem | MultiChoiceItem | NumberItem, Field(discriminator="type")
]
ITEM_TYPES: dict[str, type[_ItemBase]] = {
    "yes_no": YesNoItem, "choice": ChoiceItem, "multi_choice": MultiChoiceItem,
    "number": NumberItem,
}


class SumScoring(_Definition):
    """The score is the sum of the items' points.

    Another method is another model with a ``method`` literal of its own, added to the
    ``scoring`` field's type as a union discriminated on ``method``."""

    method: Literal["sum"]
    max_score: Number | None = None

    def combine(self, points: Mapping[str, Decimal]) -> Decimal:
        return _exact(sum(points.values(), Decimal(0)))

    def highest(self, items: Sequence[_ItemBase]) -> Decimal:
        return _exact(sum((item.max_points() for item in items), Decimal(0)))


class Level(_Definition):
    """Scores from ``min`` to ``max`` inclusive; only the last level may leave out max."""

    name: Name
    label: Label | None = None
    description: Text | None = None
    min: Number
    max: Number | None = None

    def contains(self, score: Decimal) -> bool:
        return self.min <= score and (self.max is None or score <= self.max)


class Instrument(_Definition):
    """One version of a risk instrument, checked through and through; immutable."""

    format: Literal[1] = FORMAT_VERSION
    id: InstrumentId
    version: Version
    name: Label
    description: Text | None = None
    licence: Text
    source: Text | None = None
    language: Language
    items: tuple[Item, ...] = Field(min_length=1, max_length=200)
    scoring: SumScoring
    levels: tuple[Level, ...] = Field(min_length=2, max_length=20)

    @model_validator(mode="after")
    def _consistent(self) -> Instrument:
        problems = _item_id_problems(self.items)
        highest = self.max_score
        declared = self.scoring.max_score
        if declared is not None and declared != highest:
            problems.append((("scoring", "max_score"),
                             f"is {declared} but the items add up to at most {highest}",
                             "max_score"))
        problems += _level_problems(self.levels, highest, _score_step(self.items))
        if problems:
            raise _inconsistent(problems)
        return self

    @property
    def key(self) -> tuple[str, str]:
        return (self.id, self.version)

    @property
    def max_score(self) -> Decimal:
        """The highest score the items can add up to."""
        return self.scoring.highest(self.items)

    @property
    def highest_level(self) -> Level:
        return self.levels[-1]

    def item(self, item_id: str) -> YesNoItem | ChoiceItem | MultiChoiceItem | NumberItem:
        return next(item for item in self.items if item.id == item_id)

    def level_for(self, score: Decimal) -> Level:
        """The level a score falls in (ignoring critical items)."""
        return next(level for level in self.levels if level.contains(score))

    def level_rank(self, name: str) -> int:
        """0 for the lowest level, ``len(levels) - 1`` for the highest."""
        return next(index for index, level in enumerate(self.levels) if level.name == name)


def _item_id_problems(items: Sequence[_ItemBase]) -> list[tuple[tuple[str | int, ...], str, str]]:
    seen: dict[str, int] = {}
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    for index, item in enumerate(items):
        if item.id in seen:
            problems.append((("items", index, "id"),
                             f"duplicate id {item.id!r} (also items[{seen[item.id]}])",
                             "duplicate"))
        seen.setdefault(item.id, index)
    return problems


def _score_step(items: Sequence[_ItemBase]) -> Decimal:
    """The largest amount every possible score is a multiple of (the weights' GCD)."""
    scale = 10**MAX_DECIMAL_PLACES
    scaled = [int(weight * scale) for item in items for weight in item.weights() if weight]
    return Decimal(math.gcd(*scaled)) / scale if scaled else Decimal(1)


def _level_problems(
    levels: Sequence[Level], highest: Decimal, step: Decimal
) -> list[tuple[tuple[str | int, ...], str, str]]:
    """Levels must cover every multiple of ``step`` from 0 to ``highest`` exactly once."""
    problems: list[tuple[tuple[str | int, ...], str, str]] = []
    seen: dict[str, int] = {}
    for index, level in enumerate(levels):
        if level.name in seen:
            problems.append((("levels", index, "name"),
                             f"duplicate level {level.name!r} (also levels[{seen[level.name]}])",
                             "duplicate"))
        seen.setdefault(level.name, index)
    if levels[0].min != 0:
        problems.append((("levels", 0, "min"), "the first level must start at 0", "coverage"))
    for index, level in enumerate(levels):
        last = index == len(levels) - 1
        if level.max is None and not last:
            problems.append((("levels", index, "max"),
                             "is required (only the last level may leave it out)", "missing"))
            continue
        if level.max is not None and level.max < level.min:
            problems.append((("levels", index, "max"), f"is below min ({level.min})", "range"))
            continue
        top = highest if level.max is None else min(level.max, highest)
        if _multiple_at_or_above(level.min, step) > top:
            span = f"{level.min} and above" if level.max is None else f"{level.min}-{level.max}"
            problems.append((("levels", index),
                             f"no possible score falls in this level ({span}; the items add "
                             f"up to at most {highest})", "unreachable"))
        if last:
            if level.max is not None and level.max != highest:
                where = "short of" if level.max < highest else "beyond"
                problems.append((("levels", index, "max"),
                                 f"ends {where} the highest possible score, {highest}: make it "
                                 f"{highest} or leave it out", "coverage"))
            continue
        after = levels[index + 1]
        assert level.max is not None
        if after.min <= level.max:
            problems.append((("levels", index + 1, "min"),
                             f"overlaps levels[{index}] ({level.name!r} ends at {level.max})",
                             "coverage"))
        else:
            between = _multiple_at_or_above(level.max, step)
            if between == level.max:
                between += step
            if between < after.min and between <= highest:
                problems.append((("levels", index + 1, "min"),
                                 f"leaves a gap after levels[{index}] ({level.name!r} ends at "
                                 f"{level.max}): a score of {_exact(between)} would fall in no "
                                 f"level", "coverage"))
    return problems


def _multiple_at_or_above(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding="ROUND_CEILING") * step


# --- reading and writing definitions -------------------------------------------------------


class _DefinitionLoader(yaml.SafeLoader):
    """Safe YAML, stricter still: no aliases (no "billion laughs"), no duplicate or non-text
    keys (PyYAML would keep the last of two equal keys without a word)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, "aliases (*name) are not allowed", self.peek_event().start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: set[str] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str):
                raise yaml.constructor.ConstructorError(
                    None, None, "keys must be text" + _YAML_BOOL_HINT, key_node.start_mark
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise ValueError(f"duplicate key {key!r}")
        data[key] = value
    return data


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _parse(text: str, syntax: Syntax | None) -> Any:
    if len(text) > MAX_DEFINITION_CHARS:
        raise InstrumentError([InstrumentProblem(
            "", f"the definition is longer than {MAX_DEFINITION_CHARS} characters", "too_long")])
    text = text.removeprefix("\ufeff")
    if syntax is None:
        syntax = "json" if text.lstrip().startswith(("{", "[")) else "yaml"
    try:
        if syntax == "json":
            return json.loads(text, object_pairs_hook=_unique_keys, parse_float=Decimal,
                              parse_constant=_no_constant)
        return yaml.load(text, Loader=_DefinitionLoader)  # noqa: S506 - a SafeLoader subclass
    except RecursionError:
        message = "the definition is nested too deeply"
    except json.JSONDecodeError as exc:
        message = f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        what = ", ".join(part for part in (exc.context, exc.problem) if part)
        message = f"not valid YAML: {what}{where}"
    except yaml.YAMLError as exc:
        message = f"not valid YAML: {exc}"
    except ValueError as exc:  # the JSON hooks above; a YAML date such as 2024-13-45
        message = f"not valid {syntax.upper()}: {exc}"
    raise InstrumentError([InstrumentProblem("", message, "syntax")])


def load_instrument(
    source: str | bytes | PathLike[str], *, syntax: Syntax | None = None
) -> Instrument:
    """An instrument from YAML or JSON text, or from a file given as a :class:`~pathlib.Path`.

    A ``str`` is always the definition itself, never a file name (definitions stored by
    agencies must not be able to name files on the server). Without ``syntax``, text
    starting with ``{`` is JSON and anything else YAML; a file's suffix decides for it.
    Raises :class:`InstrumentError` listing every problem."""
    if isinstance(source, PathLike):
        path = Path(source)
        if syntax is None and path.suffix.lower() in (".json", ".yaml", ".yml"):
            syntax = "json" if path.suffix.lower() == ".json" else "yaml"
        source = path.read_bytes()
    if isinstance(source, bytes):
        try:
            source = source.decode("utf-8")
        except UnicodeDecodeError:
            raise InstrumentError([InstrumentProblem(
                "", "the definition is not UTF-8 text", "encoding")]) from None
    return parse_instrument(_parse(source, syntax))


def parse_instrument(data: Any) -> Instrument:
    """An instrument from an already parsed mapping (what YAML or JSON text decodes to)."""
    if data is None:
        raise InstrumentError([InstrumentProblem("", "the definition is empty", "empty")])
    if not isinstance(data, Mapping):
        raise InstrumentError([InstrumentProblem(
            "", "the definition must be a mapping of keys to values", "type")])
    try:
        return Instrument.model_validate(dict(data))
    except ValidationError as exc:
        problems = _problems_from(exc)
    raise InstrumentError(problems)


def dump_instrument(instrument: Instrument, *, syntax: Syntax = "yaml") -> str:
    """The definition as text that :func:`load_instrument` reads back to an equal instrument."""
    data = {"format": instrument.format, **_plain(instrument.model_dump(exclude_defaults=True))}
    data["items"] = [{"id": item["id"], "type": item["type"], **item} for item in data["items"]]
    if syntax == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        # At most 4 decimal places and 7 integer digits: the float prints back exactly.
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


# Pydantic's messages rephrased; those raised above carry their own.
_MESSAGES = {
    "missing": "is required",
    "model_type": "must be a mapping of keys to values",
    "model_attributes_type": "must be a mapping of keys to values",
    "dict_type": "must be a mapping of keys to values",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "bool_type": "must be true or false",
    "string_too_short": "must not be empty",
}


def _problems_from(exc: ValidationError) -> list[InstrumentProblem]:
    problems = []
    errors = exc.errors(include_url=False, include_input=True)
    for error in errors:
        raw_loc = tuple(error["loc"])
        if error["type"] in ("too_short", "too_long") and any(
            tuple(other["loc"][: len(raw_loc)]) == raw_loc and len(other["loc"]) > len(raw_loc)
            for other in errors
        ):
            continue  # pydantic counts only the valid entries of a tuple: not a real problem
        loc = _without_item_tags(raw_loc)
        kind = error["type"]
        if kind == "inconsistent":
            for relative, message, sub_kind in error["ctx"]["problems"]:
                problems.append(InstrumentProblem(_path(loc + tuple(relative)), message,
                                                  sub_kind))
            continue
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            allowed = ", ".join(ITEM_TYPES)
            message = ("must be one of: " + allowed if kind == "union_tag_invalid"
                       else "is required (one of: " + allowed + ")")
            problems.append(InstrumentProblem(_path((*loc, "type")), message, kind))
            continue
        problems.append(InstrumentProblem(_path(loc), _message(error, raw_loc), kind))
    return problems


def _message(error: Any, raw_loc: tuple[str | int, ...]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "extra_forbidden":
        return _unknown_key_message(raw_loc)
    if kind == "string_type" and isinstance(error.get("input"), bool):
        return "must be a string" + _YAML_BOOL_HINT
    if kind == "string_type":
        return "must be a string"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters"
    if kind == "too_short":
        count = ctx.get("min_length")
        return f"must list at least {count} entr{'y' if count == 1 else 'ies'}"
    if kind == "too_long":
        return f"must list at most {ctx.get('max_length')} entries"
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}"
    if kind in _MESSAGES:
        return _MESSAGES[kind]
    return str(error["msg"]).removeprefix("Value error, ")


def _without_item_tags(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """``items.3.choice.options`` -> ``items.3.options``: the tag is the item's ``type``."""
    return tuple(part for index, part in enumerate(loc)
                 if not (part in ITEM_TYPES and index >= 2 and loc[index - 2] == "items"))


def _unknown_key_message(raw_loc: tuple[str | int, ...]) -> str:
    key = str(raw_loc[-1]) if raw_loc else ""
    model = _model_at(raw_loc[:-1])
    if model is None:
        return "unknown key"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    tag = _item_tag(model)
    where = f" for a {tag} item" if tag else ""
    return f"unknown key{where}; allowed: " + ", ".join(allowed)


def _item_tag(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("type")
    return get_args(field.annotation)[0] if field is not None else None


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The definition model found at a (raw pydantic) location, to list its keys."""
    candidates: list[type[BaseModel]] = [Instrument]
    for part in loc:
        if isinstance(part, int):
            continue
        tagged = [model for model in candidates if _item_tag(model) == part]
        if tagged:
            candidates = tagged
            continue
        candidates = [
            found for model in candidates if part in model.model_fields
            for found in _models_in(model.model_fields[part].annotation)
        ]
    return candidates[0] if len(candidates) == 1 else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


# --- the registry --------------------------------------------------------------------------


def _version_order(version: str) -> tuple[tuple[int, ...], int, str]:
    core = re.match(r"\d+(?:\.\d+)*", version)
    numbers = tuple(int(part) for part in core.group().split(".")) if core else ()
    suffix = version[core.end():] if core else version
    # "1" and "1.0.0" sort together; a pre-release ("2.0-draft") before its release.
    return numbers + (0,) * (3 - len(numbers)), (0 if suffix.startswith("-") else 1), suffix


class InstrumentRegistry:
    """Instruments by ``(id, version)``: the built-in ones plus, later, an agency's own."""

    def __init__(self, instruments: Iterable[Instrument] = ()) -> None:
        self._instruments: dict[tuple[str, str], Instrument] = {}
        for instrument in instruments:
            self.add(instrument)

    def add(self, instrument: Instrument) -> None:
        """Adding the same definition twice is harmless; a different one under the same
        ``(id, version)`` is refused: a published version never changes meaning."""
        existing = self._instruments.get(instrument.key)
        if existing is not None and existing != instrument:
            raise Conflict(
                f"Risk instrument {instrument.id!r} version {instrument.version!r} exists "
                "with a different definition; publish it under a new version."
            )
        self._instruments[instrument.key] = instrument

    def get(self, instrument_id: str, version: str | int | None = None) -> Instrument:
        """That version, or without one the latest; :class:`NotFound` when there is none."""
        if version is None:
            versions = self.versions(instrument_id)
            if versions:
                return self._instruments[(instrument_id, versions[-1])]
        elif (found := self._instruments.get((instrument_id, str(version)))) is not None:
            return found
        raise NotFound(f"There is no risk instrument {instrument_id!r}"
                       + (f" version {str(version)!r}." if version is not None else "."))

    def versions(self, instrument_id: str) -> list[str]:
        """The instrument's versions, oldest first."""
        return sorted((version for key, version in self._instruments if key == instrument_id),
                      key=_version_order)

    def __iter__(self) -> Iterator[Instrument]:
        return iter(sorted(self._instruments.values(),
                           key=lambda found: (found.id, _version_order(found.version))))

    def __len__(self) -> int:
        return len(self._instruments)

    def __contains__(self, key: object) -> bool:
        return key in self._instruments


def load_instrument_folder(folder: Traversable) -> tuple[Instrument, ...]:
    """Every ``*.yaml``, ``*.yml`` and ``*.json`` definition in a folder, in name order; a
    broken file, or two files defining the same ``(id, version)``, is an error naming it."""
    registry = InstrumentRegistry()
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        suffix = entry.name.rsplit(".", 1)[-1].lower()
        if not entry.is_file() or suffix not in ("yaml", "yml", "json"):
            continue
        try:
            instrument = load_instrument(entry.read_bytes(),
                                         syntax="json" if suffix == "json" else "yaml")
        except InstrumentError as exc:
            raise InstrumentError(exc.problems,
                                  f"The risk instrument file {entry.name} is invalid.") from None
        if instrument.key in registry:
            raise InstrumentError([InstrumentProblem(
                "", f"{instrument.id} version {instrument.version} is defined twice", "duplicate",
            )], f"The risk instrument file {entry.name} repeats another file.")
        registry.add(instrument)
    return tuple(registry)


@cache
def _builtin() -> tuple[Instrument, ...]:
    return load_instrument_folder(resources.files(DATA_PACKAGE).joinpath(DATA_FOLDER))


def builtin_instruments() -> list[Instrument]:
    """The instruments shipped in ``app/risk/data/`` (read once per process)."""
    return list(_builtin())


def builtin_registry() -> InstrumentRegistry:
    """A new registry holding the built-in instruments, for a caller to add its own to."""
    return InstrumentRegistry(_builtin())


def get_instrument(instrument_id: str, version: str | int | None = None) -> Instrument:
    """A built-in instrument by id and version (the latest without one); NotFound if none."""
    return builtin_registry().get(instrument_id, version)


# --- scoring ---------------------------------------------------------------------------------


class _AnswerProblem(Exception):
    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind


@dataclass(frozen=True)
class Assessment:
    """The outcome of one set of answers to one version of an instrument.

    ``score`` is a Decimal (exact; integral when every weight is). ``level`` is the level
    that drives urgency: the highest when a critical item was answered yes, else
    ``score_level``, the level the score falls in. ``answers`` holds the answered items
    only, in the instrument's order, normalised (yes/no as booleans, multi-choice as a
    tuple in the options' order); ``points`` what each answered item contributed."""

    instrument_id: str
    instrument_version: str
    answers: dict[str, Answer]
    points: dict[str, Decimal]
    score: Decimal
    max_score: Decimal
    level: str
    score_level: str
    is_highest_level: bool
    triggered_critical_items: tuple[str, ...]
    missing_required: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Every required item answered (a partial assessment may understate the level)."""
        return not self.missing_required


ANSWERS_DETAIL = "The answers do not fit the risk instrument."


def score(instrument: Instrument, answers: Mapping[str, Any], *,
          partial: bool = False) -> Assessment:
    """Score a set of answers (item id -> answer; ``None`` or no key means unanswered).

    Unknown items, wrong types, out-of-range numbers and unknown options are refused as
    one :class:`InstrumentError` naming each ``answers.<item_id>``; so are unanswered
    required items, unless ``partial`` is set: then what is there is scored and the
    unanswered required items are listed in ``missing_required``."""
    if not isinstance(answers, Mapping):
        raise InstrumentError([InstrumentProblem(
            "answers", "must be a mapping of item id to answer", "type")], ANSWERS_DETAIL)
    problems: list[InstrumentProblem] = []
    item_ids = {item.id for item in instrument.items}
    for key in answers:
        if key in item_ids:
            continue
        if isinstance(key, str) and len(key) <= 64 and _NAME.fullmatch(key):
            problems.append(InstrumentProblem(f"answers.{key}", "is not an item of "
                                              f"{instrument.id} version {instrument.version}",
                                              "unknown_item"))
        else:  # not even shaped like an item id: not echoed back
            problems.append(InstrumentProblem("answers", "has a key that is not an item id",
                                              "unknown_item"))
    normalised: dict[str, Answer] = {}
    missing: list[str] = []
    for item in instrument.items:
        raw = answers.get(item.id)
        if raw is None:
            if item.required:
                missing.append(item.id)
            continue
        try:
            normalised[item.id] = item.normalise(raw)
        except _AnswerProblem as problem:
            problems.append(InstrumentProblem(f"answers.{item.id}", problem.message,
                                              problem.kind))
    if not partial:
        problems += [InstrumentProblem(f"answers.{item_id}", "is required", "missing")
                     for item_id in missing]
    if problems:
        order = {f"answers.{item.id}": index for index, item in enumerate(instrument.items)}
        problems.sort(key=lambda problem: order.get(problem.path, -1))
        raise InstrumentError(problems, ANSWERS_DETAIL)

    points = {item.id: item.points(normalised[item.id])
              for item in instrument.items if item.id in normalised}
    total = instrument.scoring.combine(points)
    by_score = instrument.level_for(total)
    critical = tuple(item.id for item in instrument.items
                     if isinstance(item, YesNoItem) and item.critical
                     and normalised.get(item.id) is True)
    level = instrument.highest_level if critical else by_score
    return Assessment(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        answers=normalised,
        points=points,
        score=total,
        max_score=instrument.max_score,
        level=level.name,
        score_level=by_score.name,
        is_highest_level=level.name == instrument.highest_level.name,
        triggered_critical_items=critical,
        missing_required=tuple(missing),
    )
