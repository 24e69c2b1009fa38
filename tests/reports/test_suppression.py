"""Small-cell suppression: unit cases and a property over random tables (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.reports.suppression import marker, suppress


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
    if not table.grand_hidden:
        assert table.shown_grand_total() == str(sum(map(sum, cells)))


def test_amounts_hide_where_their_counts_do_and_a_hidden_zero_protects_nothing() -> None:
    # Minutes of the contacts: the counts hid (0, 1) and (0, 2); (0, 2) is zero minutes,
    # so the row would give (0, 1) away: the smallest other non-zero amount goes too.
    table = suppress([[240, 360, 0]], 5, hide=frozenset({(0, 1), (0, 2)}))
    assert {(0, 0), (0, 1), (0, 2)} <= table.hidden
    assert table.shown_row_total(0) == "600"
    assert 0 in table.column_totals_hidden and 1 in table.column_totals_hidden
