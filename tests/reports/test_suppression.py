"""Small-cell suppression: unit cases and a property over random tables (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.reports.suppression import derivable, marker, suppress


def test_small_counts_are_hidden_and_zero_is_shown() -> None:
    table = suppress([[0, 3, 40], [12, 50, 7]], threshold=5)
    assert table.shown(0, 0) == "0"
    assert table.shown(0, 1) == "<6"
    assert table.shown(1, 0) == "12" or (1, 0) in table.hidden
    assert marker(10) == "<11"


def test_threshold_itself_is_hidden_and_the_next_count_shown() -> None:
    table = suppress([[5, 5], [5, 5], [6, 7]], threshold=5)
    assert table.hidden == {(0, 0), (0, 1), (1, 0), (1, 1)}
    assert table.shown(2, 0) == "6" and table.shown_column_total(0) == "16"
    assert not table.row_totals_hidden and not table.grand_hidden


def test_a_lone_hidden_cell_in_a_row_hides_the_next_smallest() -> None:
    # Row 0 would give 2 away as 100 - 30 - 68; the smallest visible cell (30) goes too,
    # and the columns they sit in hide a partner in the other row.
    table = suppress([[2, 30, 68], [40, 50, 60]], threshold=5)
    assert (0, 0) in table.hidden and (0, 1) in table.hidden
    assert (1, 0) in table.hidden and (1, 1) in table.hidden
    assert (0, 2) not in table.hidden and (1, 2) not in table.hidden
    assert table.shown_row_total(0) == "100" and table.shown_grand_total() == "250"


def test_a_lone_hidden_cell_with_nothing_to_pair_hides_the_total() -> None:
    # One row, one non-zero cell: the row total would be the cell itself.
    table = suppress([[3, 0, 0]], threshold=5)
    assert table.hidden == {(0, 0)}
    assert 0 in table.row_totals_hidden and 0 in table.column_totals_hidden
    assert table.grand_hidden
    assert table.shown_row_total(0) == "<6" and table.shown_column_total(1) == "0"


def test_a_small_total_is_hidden_like_a_cell() -> None:
    # Both cells hidden (2 and 1); their column's total, 3, would show a small count.
    table = suppress([[40, 2], [38, 1]], threshold=5)
    assert {(0, 1), (1, 1)} <= table.hidden
    assert table.shown_column_total(1) == "<6"


def test_totals_are_true_values_not_sums_of_what_is_shown() -> None:
    table = suppress([[1, 2], [3, 4]], threshold=2)
    assert table.row_totals == [3, 7] and table.column_totals == [4, 6]
    assert table.grand_total == 10


def test_bad_tables_are_refused() -> None:
    with pytest.raises(ValueError):
        suppress([[1, 2], [3]])
    with pytest.raises(ValueError):
        suppress([[-1]])
    with pytest.raises(ValueError):
        suppress([[1]], threshold=0)


def _lines(table):  # type: ignore[no-untyped-def]
    """Each line as (hidden flags of its members, is its total hidden)."""
    height, width = len(table.cells), len(table.cells[0])
    for i in range(height):
        yield [(i, j) in table.hidden for j in range(width)], i in table.row_totals_hidden
    for j in range(width):
        yield [(i, j) in table.hidden for i in range(height)], j in table.column_totals_hidden
    yield [i in table.row_totals_hidden for i in range(height)], table.grand_hidden
    yield [j in table.column_totals_hidden for j in range(width)], table.grand_hidden


tables = st.integers(1, 6).flatmap(lambda width: st.lists(
    st.lists(st.one_of(st.integers(0, 8), st.integers(0, 300)), min_size=width,
             max_size=width), min_size=1, max_size=7))


@settings(max_examples=400, deadline=None)
@given(cells=tables, threshold=st.integers(1, 10))
def test_no_small_count_is_visible_and_none_can_be_derived(cells: list[list[int]],
                                                           threshold: int) -> None:
    table = suppress(cells, threshold=threshold)
    height, width = len(cells), len(cells[0])
    for i in range(height):
        for j in range(width):
            if (i, j) not in table.hidden:
                assert not 1 <= cells[i][j] <= threshold
                assert table.shown(i, j) == str(cells[i][j])
            else:
                assert table.shown(i, j) == marker(threshold)
    for members, total_hidden in _lines(table):
        if not total_hidden:
            # A visible total with exactly one hidden member would give it away.
            assert sum(members) != 1
        else:
            # A total is hidden only to protect a hidden member (otherwise adding up the
            # visible members gives it back, and it protects nothing).
            assert any(members)
    # A visible total equals the true sum; a visible total never sits next to exactly one
    # hidden item, so subtracting the visible cells from it never yields a hidden one.
    for i in range(height):
        if i not in table.row_totals_hidden:
            assert table.shown_row_total(i) == str(sum(cells[i]))
            assert not 1 <= sum(cells[i]) <= threshold
    for j in range(width):
        if j not in table.column_totals_hidden:
            assert not 1 <= sum(row[j] for row in cells) <= threshold
    if not table.grand_hidden:
        assert not 1 <= sum(map(sum, cells)) <= threshold
    if not table.grand_hidden:
        assert table.shown_grand_total() == str(sum(map(sum, cells)))


def test_amounts_hide_where_their_counts_do_and_a_hidden_zero_protects_nothing() -> None:
    # Minutes of the contacts: the counts hid (0, 1) and (0, 2); (0, 2) is zero minutes,
    # so the row would give (0, 1) away: the smallest other non-zero amount goes too.
    counts = suppress([[8, 6, 4]], 5)
    assert counts.hidden == {(0, 1), (0, 2)}
    table = suppress([[240, 360, 0]], 5, hide=counts)
    assert {(0, 0), (0, 1), (0, 2)} <= table.hidden
    assert table.shown_row_total(0) == "600"
    assert 0 in table.column_totals_hidden and 1 in table.column_totals_hidden
    # Totals hidden among the counts are hidden among the amounts too.
    assert counts.column_totals_hidden <= table.column_totals_hidden


def test_amounts_hide_totals_their_counts_hide() -> None:
    counts = suppress([[40, 2], [38, 1]], 5)  # the second column's total, 3, is small
    assert 1 in counts.column_totals_hidden
    hours = suppress([[1200, 90], [1100, 40]], 5, hide=counts)
    assert 1 in hours.column_totals_hidden and hours.shown_column_total(1) == "<6"


def test_a_cell_pinned_by_a_chain_of_lines_is_not_left_derivable() -> None:
    # Two 2×2 blocks of hidden cells joined by a hidden cell (1, 2): every line holds two
    # hidden cells, yet rows 0-1 minus columns 0-1 give (1, 2) exactly.
    cells = [[2, 3, 0, 0, 50],
             [3, 2, 4, 0, 50],
             [0, 0, 3, 2, 50],
             [0, 0, 2, 3, 50],
             [60, 60, 60, 60, 60]]
    table = suppress(cells, threshold=5)
    lines, value, hidden = _equations(table)
    assert derivable(lines, value, hidden) == []
    assert _free_cells(lines, value, hidden) == {k for k in hidden if k[0] == "c"}


def _equations(table):  # type: ignore[no-untyped-def]
    """The lines, the true values and the hidden items of a suppressed table, as
    ``derivable`` takes them."""
    height, width = len(table.cells), len(table.cells[0])
    value = {("c", i, j): table.cells[i][j] for i in range(height) for j in range(width)}
    value |= {("r", i): t for i, t in enumerate(table.row_totals)}
    value |= {("k", j): t for j, t in enumerate(table.column_totals)}
    value[("g",)] = table.grand_total
    lines = [([("c", i, j) for j in range(width)], ("r", i)) for i in range(height)]
    lines += [([("c", i, j) for i in range(height)], ("k", j)) for j in range(width)]
    lines += [([("r", i) for i in range(height)], ("g",)),
              ([("k", j) for j in range(width)], ("g",))]
    hidden = {("c", i, j) for i, j in table.hidden}
    hidden |= {("r", i) for i in table.row_totals_hidden}
    hidden |= {("k", j) for j in table.column_totals_hidden}
    if table.grand_hidden:
        hidden.add(("g",))
    return lines, value, hidden


def _free_cells(lines, value, hidden):  # type: ignore[no-untyped-def]
    """Independent of ``derivable`` (which asks whether a unit vector lies in the row space):
    the null space of the equations over the hidden non-zero items, from a reduced row
    echelon form; a hidden cell is free when some null-space vector moves it — another
    table with the same visible values and a different value there exists."""
    from fractions import Fraction

    unknown = sorted((k for k in hidden if value[k] > 0), key=repr)
    index = {k: n for n, k in enumerate(unknown)}
    matrix = []
    for members, total in lines:
        row = [Fraction(0)] * len(unknown)
        for key, sign in [*((m, 1) for m in members), (total, -1)]:
            if key in index:
                row[index[key]] += sign
        matrix.append(row)
    pivots: list[int] = []
    r = 0
    for c in range(len(unknown)):
        found = next((i for i in range(r, len(matrix)) if matrix[i][c]), None)
        if found is None:
            continue
        matrix[r], matrix[found] = matrix[found], matrix[r]
        matrix[r] = [v / matrix[r][c] for v in matrix[r]]
        for i in range(len(matrix)):
            if i != r and matrix[i][c]:
                factor = matrix[i][c]
                matrix[i] = [a - factor * b for a, b in zip(matrix[i], matrix[r], strict=True)]
        pivots.append(c)
        r += 1
    free = [c for c in range(len(unknown)) if c not in pivots]
    moved: set[int] = set(free)
    for f in free:
        for row_index, p in enumerate(pivots):
            if matrix[row_index][f]:
                moved.add(p)
    return {unknown[c] for c in moved if unknown[c][0] == "c"}


@settings(max_examples=200, deadline=None)
@given(cells=tables, threshold=st.integers(1, 10))
def test_no_hidden_cell_is_determined_by_all_the_visible_values_together(
        cells: list[list[int]], threshold: int) -> None:
    table = suppress(cells, threshold=threshold)
    lines, value, hidden = _equations(table)
    cells_hidden = {k for k in hidden if k[0] == "c" and value[k] > 0}
    assert _free_cells(lines, value, hidden) == cells_hidden
