"""What changed between two revisions: categories compared as a set, the rest leaf by leaf."""

from app.incidents.service import diff_states
from app.reports.court_summary import _change_text
from app.safety_plans.service import Change

BEFORE = {"occurred": {"precision": "date", "start": "2026-01-10"},
          "categories": ["physical", "stalking"], "place": "Fictional flat",
          "witnesses": [], "retracted": False}


def test_a_category_moved_along_by_an_insertion_is_not_a_change() -> None:
    after = BEFORE | {"categories": ["physical", "threats", "stalking"]}
    assert diff_states(BEFORE, after) == [Change("categories", None, "threats", "added")]


def test_removed_and_added_categories_each_say_which() -> None:
    after = BEFORE | {"categories": ["threats"]}
    assert diff_states(BEFORE, after) == [
        Change("categories", "physical", None, "removed"),
        Change("categories", "stalking", None, "removed"),
        Change("categories", None, "threats", "added")]


def test_changes_stay_in_document_order() -> None:
    after = BEFORE | {"occurred": {"precision": "date", "start": "2026-01-11"},
                      "categories": ["physical"], "place": "Fictional bus stop",
                      "retracted": True}
    assert [(c.path, c.kind) for c in diff_states(BEFORE, after)] == [
        ("occurred.start", "changed"), ("categories", "removed"), ("place", "changed"),
        ("retracted", "changed")]


def test_equal_states_differ_in_nothing() -> None:
    assert diff_states(BEFORE, dict(BEFORE)) == []


def test_categories_that_are_not_lists_are_compared_as_values() -> None:
    # A withheld or missing value is not a set of categories: compared as it is.
    after = BEFORE | {"categories": "(withheld)"}
    assert diff_states(BEFORE, after) == [
        Change("categories", ["physical", "stalking"], "(withheld)", "changed")]


def test_the_court_summary_names_a_changed_category_by_its_label() -> None:
    assert _change_text("categories", "technology_facilitated") == "Technology-facilitated"
    assert _change_text("categories", None) == "(none)"
    assert _change_text("place", "Fictional flat") == "Fictional flat"
