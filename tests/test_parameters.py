"""Notebook parameters become one validated config per stage; bad values are named."""

import pytest
from pydantic import Field

from ec2er_utils.parameters import ParameterError, StageConfig


class ToyConfig(StageConfig):
    num_dialogues: int = Field(2, ge=1)
    base_url: str | None = None


def test_fields_are_read_from_the_namespace_and_the_rest_ignored():
    config = ToyConfig.from_parameters({"num_dialogues": 5, "np": object(), "__name__": "__main__"})
    assert config.num_dialogues == 5 and config.base_url is None


def test_papermill_strings_that_parse_are_accepted():
    assert ToyConfig.from_parameters({"num_dialogues": "7"}).num_dialogues == 7


def test_a_wrong_type_is_reported_by_parameter_name_with_the_value_and_the_fix():
    with pytest.raises(ParameterError) as caught:
        ToyConfig.from_parameters({"num_dialogues": "abc"})
    message = str(caught.value)
    assert "'num_dialogues'" in message and "'abc'" in message and "papermill -p" in message


def test_every_bad_parameter_is_listed_not_only_the_first():
    with pytest.raises(ParameterError) as caught:
        ToyConfig.from_parameters({"num_dialogues": 0, "base_url": 3})
    assert "'num_dialogues'" in str(caught.value) and "'base_url'" in str(caught.value)


def test_assignment_is_validated_too():
    config = ToyConfig()
    with pytest.raises(ValueError):
        config.num_dialogues = -1
