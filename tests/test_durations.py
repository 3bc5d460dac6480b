import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serverlord.durations import DurationError, format_duration, parse_duration

HINT = "use a number with s, m, h, d or w, like 90s, 5m, 1h30m or 2d"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("5m", 300),
        ("1h30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("1d12h", 129600),
        ("1w2d3h4m5s", 604800 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
    ],
)
def test_it_parses_numbers_with_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_it_reads_a_plain_number_as_seconds() -> None:
    assert parse_duration("60") == 60


def test_it_accepts_whitespace_around_the_duration() -> None:
    assert parse_duration("  5m\n") == 300


def test_it_accepts_a_decimal_number() -> None:
    assert parse_duration("1.5h") == 5400
    assert parse_duration("0.25s") == 0.25


def test_it_returns_a_float() -> None:
    assert isinstance(parse_duration("5m"), float)


def test_it_refuses_an_unknown_unit_with_a_hint() -> None:
    with pytest.raises(DurationError) as caught:
        parse_duration("5x")

    assert str(caught.value) == f'"5x" is not a duration: {HINT}'


def test_its_error_is_a_value_error() -> None:
    assert issubclass(DurationError, ValueError)


@pytest.mark.parametrize("text", ["", "   "])
def test_it_refuses_an_empty_text(text: str) -> None:
    with pytest.raises(DurationError, match="a duration is needed"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0", "0s", "0h0m"])
def test_it_refuses_zero(text: str) -> None:
    with pytest.raises(DurationError, match="is zero"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["-5m", "-60"])
def test_it_refuses_a_negative_duration(text: str) -> None:
    with pytest.raises(DurationError, match="is negative"):
        parse_duration(text)


def test_it_refuses_a_repeated_unit() -> None:
    with pytest.raises(DurationError, match='"5m5m" repeats the unit m'):
        parse_duration("5m5m")


def test_it_refuses_units_out_of_order() -> None:
    with pytest.raises(DurationError, match='"30m1h" has its units out of order'):
        parse_duration("30m1h")


@pytest.mark.parametrize(
    "text",
    ["500ms", "5M", "1h 30m", "1m30", "h", "1.h", ".5h", "1e3", "inf", "nan", "-"],
)
def test_it_refuses_text_that_is_not_a_duration(text: str) -> None:
    with pytest.raises(DurationError, match="is not a duration"):
        parse_duration(text)


def test_it_refuses_digits_from_other_scripts() -> None:
    with pytest.raises(DurationError, match="is not a duration"):
        parse_duration("\u0665m")


def test_it_refuses_a_number_too_large_for_a_float() -> None:
    with pytest.raises(DurationError, match="is too large"):
        parse_duration("9" * 400 + "w")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (90, "1m30s"),
        (3600, "1h"),
        (86400 * 2, "2d"),
        (604800, "1w"),
        (90061, "1d1h1m1s"),
        (0.25, "0.25s"),
        (60.5, "1m0.5s"),
        (1.23456, "1.235s"),
        (0, "0s"),
    ],
)
def test_it_formats_seconds_compactly(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_it_rounds_to_whole_milliseconds_before_splitting_units() -> None:
    assert format_duration(59.9996) == "1m"


def test_it_formats_a_negative_duration_with_a_minus_sign() -> None:
    assert format_duration(-90) == "-1m30s"


@pytest.mark.parametrize("seconds", [math.inf, -math.inf, math.nan])
def test_it_refuses_to_format_a_value_that_is_not_finite(seconds: float) -> None:
    with pytest.raises(DurationError, match="cannot be shown"):
        format_duration(seconds)


@given(st.integers(min_value=1, max_value=10**12))
def test_parsing_a_formatted_whole_number_of_seconds_gives_it_back(
    seconds: int,
) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.integers(min_value=1, max_value=10**9))
def test_parsing_formatted_milliseconds_gives_them_back(millis: int) -> None:
    seconds = millis / 1000

    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)
