import pytest

from common.db import check_schema_name


@pytest.mark.parametrize("name", ["dataset", "t_0123abc", "_x"])
def test_valid_schema_names_pass(name: str) -> None:
    assert check_schema_name(name) == name


@pytest.mark.parametrize("name", ["", "Dataset", "a;drop", "1abc", "a-b", "x" * 64])
def test_unsafe_schema_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match="invalid schema name"):
        check_schema_name(name)
