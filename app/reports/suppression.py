"""Small-cell suppression for de-identified tables (funder aggregates).

A table is rows × columns of true counts with a total per row, per column and overall.
What is shown follows three rules, applied until nothing changes:

1. Primary: a count (a cell or a total) from 1 to the threshold
   (``ADVOCASE_REPORT_SUPPRESSION_THRESHOLD``, 5 by default) is hidden, shown as ``<N``
   (N = threshold + 1, so ``<6`` by default: the hidden value is below it). Zero is shown:
   it names nobody.
2. Complementary: every line of the table with its total — each row with its row total,
   each column with its column total, the row totals with the grand total, the column
   totals with the grand total — must hide none of its items or at least two. A line with
   exactly one hidden item hides its smallest visible non-zero cell as well (the first in
   order on ties); when it has none, its total is hidden instead.
3. Totals are computed from the true values and shown only where rule 2 leaves them
   visible, so a visible total never gives a hidden cell away by subtraction.

The rule works line by line, as the issue asks; lines can still pin a hidden cell
together (a hidden cell joining two otherwise separate groups of hidden cells is the sum
of their totals' difference). So the result is then checked as a whole: every line is an
equation (its members add up to its total) over the hidden items, and a hidden count that
those equations determine exactly gets its row's total hidden too, and rule 2 runs again.
Hiding only grows, so it always ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

DEFAULT_THRESHOLD = 5


def marker(threshold: int) -> str:
    """What a hidden count shows: ``<6`` for a threshold of 5."""
    return f"<{threshold + 1}"


@dataclass(frozen=True)
class Suppressed:
    """A table's true values and which of them are hidden.

    ``hidden`` holds cell positions ``(row, column)``; ``row_totals_hidden`` and
    ``column_totals_hidden`` the indexes of hidden totals; ``grand_hidden`` the overall
    total."""

    cells: tuple[tuple[int, ...], ...]
    hidden: frozenset[tuple[int, int]]
    row_totals_hidden: frozenset[int]
    column_totals_hidden: frozenset[int]
    grand_hidden: bool
    threshold: int

    @property
    def row_totals(self) -> list[int]:
        return [sum(row) for row in self.cells]

    @property
    def column_totals(self) -> list[int]:
        width = len(self.cells[0]) if self.cells else 0
        return [sum(row[j] for row in self.cells) for j in range(width)]

    @property
    def grand_total(self) -> int:
        return sum(self.row_totals)

    def shown(self, row: int, column: int) -> str:
        """A cell as displayed."""
        if (row, column) in self.hidden:
            return marker(self.threshold)
        return str(self.cells[row][column])

    def shown_row_total(self, row: int) -> str:
        return marker(self.threshold) if row in self.row_totals_hidden \
            else str(self.row_totals[row])

    def shown_column_total(self, column: int) -> str:
        return marker(self.threshold) if column in self.column_totals_hidden \
            else str(self.column_totals[column])

    def shown_grand_total(self) -> str:
        return marker(self.threshold) if self.grand_hidden else str(self.grand_total)


def is_small(value: int, threshold: int) -> bool:
    return 1 <= value <= threshold


Item = tuple[object, ...]
Line = tuple[list[Item], Item]


def _complement(lines: list[Line], value: dict[Item, int], hidden: set[Item]) -> None:
    """Rule 2 until nothing changes."""
    changed = True
    while changed:
        changed = False
        for members, total in lines:
            if sum(1 for key in (*members, total) if key in hidden and value[key] > 0) != 1:
                continue
            candidates = [key for key in members if key not in hidden and value[key] > 0]
            if candidates:
                # The smallest visible non-zero member (stable: the first on ties).
                hidden.add(min(candidates, key=lambda key: value[key]))
            else:
                hidden.add(total)
            changed = True


def derivable(lines: list[Line], value: dict[Item, int], hidden: set[Item]) -> list[Item]:
    """The hidden non-zero cells that the visible values and the lines' equations determine
    exactly (a hidden zero counts as known: a reader may know it is zero)."""
    unknown = sorted((key for key in hidden if value[key] > 0), key=repr)
    if not unknown:
        return []
    column = {key: n for n, key in enumerate(unknown)}
    rows: list[list[Fraction]] = []
    for members, total in lines:
        equation = [Fraction(0)] * len(unknown)
        for key, sign in [*((m, 1) for m in members), (total, -1)]:
            if key in column:
                equation[column[key]] += sign
        if any(equation):
            rows.append(equation)
    basis = _reduced(rows)
    pinned = []
    for key in unknown:
        if key[0] != "c":
            continue
        target = [Fraction(0)] * len(unknown)
        target[column[key]] = Fraction(1)
        if _in_span(basis, target):
            pinned.append(key)
    return pinned


def _reduced(rows: list[list[Fraction]]) -> list[tuple[int, list[Fraction]]]:
    """A row-reduced basis of the rows, as (pivot column, row)."""
    basis: list[tuple[int, list[Fraction]]] = []
    for row in rows:
        row = _reduce(basis, row)
        pivot = next((n for n, v in enumerate(row) if v), None)
        if pivot is None:
            continue
        row = [v / row[pivot] for v in row]
        basis = [(p, [a - b[pivot] * c for a, c in zip(b, row, strict=True)])
                 if b[pivot] else (p, b) for p, b in basis]
        basis.append((pivot, row))
    return basis


def _reduce(basis: list[tuple[int, list[Fraction]]], row: list[Fraction]) -> list[Fraction]:
    row = list(row)
    for pivot, base in basis:
        if row[pivot]:
            factor = row[pivot]
            row = [a - factor * b for a, b in zip(row, base, strict=True)]
    return row


def _in_span(basis: list[tuple[int, list[Fraction]]], target: list[Fraction]) -> bool:
    return not any(_reduce(basis, target))


def suppress(cells: list[list[int]] | tuple[tuple[int, ...], ...],
             threshold: int = DEFAULT_THRESHOLD, *,
             hide: Suppressed | None = None) -> Suppressed:
    """Hide small counts and whatever else would give them away (see the module's rules).

    ``hide``: a suppressed table of counts whose hidden cells and totals are hidden first
    instead of the small ones — for a table of amounts (hours) that must hide wherever its
    counts do. A hidden cell whose value is
    zero protects nothing (a reader may know it is zero), so it does not count towards a
    line's two."""
    if threshold < 1:
        raise ValueError("the suppression threshold is at least 1")
    table = tuple(tuple(int(v) for v in row) for row in cells)
    if any(v < 0 for row in table for v in row):
        raise ValueError("counts are never negative")
    height = len(table)
    width = len(table[0]) if table else 0
    if any(len(row) != width for row in table):
        raise ValueError("every row has as many cells as the first")
    row_totals = [sum(row) for row in table]
    column_totals = [sum(row[j] for row in table) for j in range(width)]
    grand = sum(row_totals)

    # Every item of the extended table: ("c", i, j) cells, ("r", i) row totals,
    # ("k", j) column totals, ("g",) the grand total; its true value.
    value: dict[tuple[object, ...], int] = {}
    for i in range(height):
        for j in range(width):
            value[("c", i, j)] = table[i][j]
        value[("r", i)] = row_totals[i]
    for j in range(width):
        value[("k", j)] = column_totals[j]
    value[("g",)] = grand

    lines: list[tuple[list[tuple[object, ...]], tuple[object, ...]]] = []
    for i in range(height):
        lines.append(([("c", i, j) for j in range(width)], ("r", i)))
    for j in range(width):
        lines.append(([("c", i, j) for i in range(height)], ("k", j)))
    lines.append(([("r", i) for i in range(height)], ("g",)))
    lines.append(([("k", j) for j in range(width)], ("g",)))

    if hide is None:
        # Totals are counts too: a total from 1 to the threshold is hidden like a cell.
        hidden: set[tuple[object, ...]] = {key for key, v in value.items()
                                            if is_small(v, threshold)}
    else:
        hidden = {("c", i, j) for i, j in hide.hidden}
        hidden |= {("r", i) for i in hide.row_totals_hidden}
        hidden |= {("k", j) for j in hide.column_totals_hidden}
        if hide.grand_hidden:
            hidden.add(("g",))
    while True:
        _complement(lines, value, hidden)
        pinned = derivable(lines, value, hidden)
        if not pinned:
            break
        # Cut the equations that pin it: its row's total, else its column's, else the
        # grand total, else the largest visible total, else the largest visible cell
        # (one is always left: with every non-zero item hidden nothing is pinned).
        _, i, j = min(pinned, key=lambda key: (key[1], key[2]))  # type: ignore[type-var]
        visible = [key for key, v in value.items() if key not in hidden and v > 0]
        totals = sorted((key for key in visible if key[0] != "c"), key=lambda k: -value[k])
        cells_left = sorted((key for key in visible if key[0] == "c"), key=lambda k: -value[k])
        for choice in [("r", i), ("k", j), ("g",), *totals, *cells_left]:
            if choice not in hidden and value[choice] > 0:
                hidden.add(choice)
                break
    return Suppressed(
        cells=table,
        hidden=frozenset((int(k[1]), int(k[2])) for k in hidden  # type: ignore[call-overload]
                         if k[0] == "c"),
        row_totals_hidden=frozenset(int(k[1]) for k in hidden  # type: ignore[call-overload]
                                    if k[0] == "r"),
        column_totals_hidden=frozenset(int(k[1]) for k in hidden  # type: ignore[call-overload]
                                       if k[0] == "k"),
        grand_hidden=("g",) in hidden, threshold=threshold)
