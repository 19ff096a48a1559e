"""read_flag: a true/false setting from the bundle command line means what the user typed."""

from __future__ import annotations

import pytest

from monai_pruning.config_values import ConfigValueError, read_flag


@pytest.mark.parametrize(
    "value, expected",
    [(True, True), (False, False), ("true", True), ("false", False), ("False", False), (" TRUE ", True)],
)
def test_bools_and_the_words_true_and_false_are_read_for_what_they_say(value, expected):
    assert read_flag(value, "resume") is expected


@pytest.mark.parametrize("value", ["yes", "flase", "", 0, 1, None, 0.0])
def test_anything_else_is_refused_with_a_message_naming_the_setting(value):
    with pytest.raises(ConfigValueError, match=f"`resume` must be true or false, got {value!r}"):
        read_flag(value, "resume")
