"""rooms.strictjson: the JSON every client-facing reader accepts (docs/design.md
"Crafted input"), tested with values."""

from __future__ import annotations

import pytest

from rooms.strictjson import INT_MAX, INT_MIN, MAX_DEPTH, JsonRefused, loads


def code_of(text: str) -> str:
    with pytest.raises(JsonRefused) as caught:
        loads(text)
    return caught.value.code


def test_ordinary_json_is_read_as_json_loads_reads_it() -> None:
    text = '{"a": [1, -2, 3.5, true, null, "é\\u00e9\\ud83d\\ude00"], "b": {"c": ""}}'
    assert loads(text) == {"a": [1, -2, 3.5, True, None, "éé😀"], "b": {"c": ""}}


def test_depth_limit_counts_containers() -> None:
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None
    assert loads('{"a":' * MAX_DEPTH + "1" + "}" * MAX_DEPTH) is not None
    assert code_of("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)) == "json_too_deep"
    assert code_of('{"a":' * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1)) == "json_too_deep"
    # Past the decoder's own recursion limit: refused the same, not a RecursionError.
    assert code_of("[" * 200_000 + "]" * 200_000) == "json_too_deep"


def test_integers_are_64_bit() -> None:
    assert loads(str(INT_MAX)) == INT_MAX and loads(str(INT_MIN)) == INT_MIN
    for text in (str(INT_MAX + 1), str(INT_MIN - 1), "1" * 4301, "-" + "9" * 100_000):
        assert code_of(text) == "number_too_large"


def test_floats_must_be_finite() -> None:
    assert loads("1e308") == 1e308
    assert code_of("1e309") == "number_too_large"
    assert code_of("-1e400") == "number_too_large"
    for constant in ("NaN", "Infinity", "-Infinity"):
        assert code_of(constant) == "bad_json"


@pytest.mark.parametrize(
    "text", ['"\\u0000"', '["a\\u0000"]', '{"\\u0000": 1}', '{"a": {"b": ["x\\u0000y"]}}']
)
def test_nul_in_any_string_or_key(text: str) -> None:
    assert code_of(text) == "nul_character"


@pytest.mark.parametrize("text", ['"\\ud800"', '{"\\udfff": 1}', '["ok", "\\ud83d"]'])
def test_lone_surrogates(text: str) -> None:
    assert code_of(text) == "bad_encoding"


@pytest.mark.parametrize("text", ["", "{", "[1,]", "{'a': 1}", '{"a": 1} x', "01"])
def test_not_json(text: str) -> None:
    assert code_of(text) == "bad_json"
