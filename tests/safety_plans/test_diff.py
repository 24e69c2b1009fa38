"""diff_plans: exactly the changed leaves, list items by index, added and removed shown."""

from __future__ import annotations

from app.safety_plans.service import Change, diff_plans


def test_equal_plans_have_no_changes() -> None:
    plan = {"go_bag": [{"item": "Passport", "ready": False}], "code_word": {"word": "x"},
            "notes": ""}
    assert diff_plans(plan, plan) == []
    assert diff_plans({}, {}) == []


def test_one_ticked_item_is_one_change() -> None:
    a = {"go_bag": [{"item": "Passport", "ready": False}, {"item": "Cash", "ready": False},
                    {"item": "Keys", "ready": False}]}
    b = {"go_bag": [{"item": "Passport", "ready": False}, {"item": "Cash", "ready": False},
                    {"item": "Keys", "ready": True}]}
    assert diff_plans(a, b) == [Change("go_bag[2].ready", False, True, "changed")]


def test_bool_is_not_a_number() -> None:
    assert diff_plans({"ready": True}, {"ready": 1}) == [Change("ready", True, 1)]
    assert diff_plans({"n": 0}, {"n": False}) == [Change("n", 0, False)]


def test_longer_list_shows_added_items_whole() -> None:
    a = {"safe_places": [{"place": "A", "how_to_get_there": "bus"}]}
    b = {"safe_places": [{"place": "A", "how_to_get_there": "taxi"},
                         {"place": "B", "how_to_get_there": "walk"},
                         {"place": "C", "how_to_get_there": ""}]}
    assert diff_plans(a, b) == [
        Change("safe_places[0].how_to_get_there", "bus", "taxi", "changed"),
        Change("safe_places[1]", None, {"place": "B", "how_to_get_there": "walk"}, "added"),
        Change("safe_places[2]", None, {"place": "C", "how_to_get_there": ""}, "added"),
    ]


def test_shorter_list_shows_removed_items_whole() -> None:
    a = {"go_bag": [{"item": "Passport", "ready": True}, {"item": "Cash", "ready": False}]}
    b = {"go_bag": []}
    assert diff_plans(a, b) == [
        Change("go_bag[0]", {"item": "Passport", "ready": True}, None, "removed"),
        Change("go_bag[1]", {"item": "Cash", "ready": False}, None, "removed"),
    ]


def test_nested_lists_of_different_lengths() -> None:
    a = {"outer": [{"inner": [1, 2, 3]}, {"inner": []}]}
    b = {"outer": [{"inner": [1, 5]}, {"inner": ["x"]}, {"inner": [7]}]}
    assert diff_plans(a, b) == [
        Change("outer[0].inner[1]", 2, 5, "changed"),
        Change("outer[0].inner[2]", 3, None, "removed"),
        Change("outer[1].inner[0]", None, "x", "added"),
        Change("outer[2]", None, {"inner": [7]}, "added"),
    ]


def test_keys_on_one_side_and_type_changes() -> None:
    a = {"code_word": {"word": "blue", "check_in_time": None}, "old": 1, "mixed": [1]}
    b = {"code_word": {"word": "blue", "check_in_time": "18:00"}, "new": 2, "mixed": {"a": 1}}
    assert diff_plans(a, b) == [
        Change("code_word.check_in_time", None, "18:00", "changed"),
        Change("old", 1, None, "removed"),
        Change("mixed", [1], {"a": 1}, "changed"),
        Change("new", None, 2, "added"),
    ]


def test_inputs_are_not_modified() -> None:
    a = {"go_bag": [{"item": "Passport", "ready": False}]}
    b = {"go_bag": [{"item": "Passport", "ready": True}, {"item": "Cash", "ready": False}]}
    a_copy, b_copy = repr(a), repr(b)
    diff_plans(a, b)
    assert (repr(a), repr(b)) == (a_copy, b_copy)
