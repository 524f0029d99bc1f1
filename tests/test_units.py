"""Lengths and sizes as users type them."""

import pytest

from archlint.errors import ArchlintError
from archlint.units import MAX_SEQ_LEN, format_bytes, parse_length, parse_lengths, parse_size


@pytest.mark.parametrize("text,expected", [
    ("4096", 4096), ("8k", 8192), ("128k", 131072), ("1M", 1048576), ("1m", 2**20),
    ("0.5k", 512), (" 16K ", 16384), (512, 512),
])
def test_lengths(text, expected):
    assert parse_length(text) == expected


@pytest.mark.parametrize("text", ["0", "-5", "abc", "8kb", "", "1e3", str(MAX_SEQ_LEN + 1),
                                  "9999999999999999999k"])
def test_bad_lengths_say_what_works(text):
    with pytest.raises(ArchlintError) as info:
        parse_length(text)
    assert "\n" not in str(info.value)


def test_length_lists_are_sorted_and_unique():
    assert parse_lengths("4k,1k,4096") == [1024, 4096]


@pytest.mark.parametrize("text,expected", [
    ("16GB", 16 * 10**9), ("16 GiB", 16 * 2**30), ("512MB", 512 * 10**6), ("1.5GB", 1.5e9),
    ("80gib", 80 * 2**30), ("2TB", 2 * 10**12),
])
def test_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["16GX", "16", "GB", "-1GB", "0GB"])
def test_bad_sizes(text):
    with pytest.raises(ArchlintError, match="size"):
        parse_size(text)


def test_format_bytes_uses_decimal_units():
    assert format_bytes(34.2e9) == "34.2 GB"
    assert format_bytes(512) == "512 B"
