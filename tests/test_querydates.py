"""Dates typed into queries become a date range; words that merely look like dates stay words."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from clipsearch.search.querydates import split_date

TODAY = date(2024, 10, 15)


@pytest.mark.parametrize("query, text, after, before, said", [
    ("beach July 2023", "beach", datetime(2023, 7, 1), datetime(2023, 8, 1), "July 2023"),
    ("dogs in 2019", "dogs", datetime(2019, 1, 1), datetime(2020, 1, 1), "2019"),
    ("beach last summer", "beach", datetime(2024, 6, 1), datetime(2024, 9, 1), "summer 2024"),
    ("snow last winter", "snow", datetime(2023, 12, 1), datetime(2024, 3, 1), "winter 2023-2024"),
    ("kids in summer 2021 at the lake", "kids at the lake", datetime(2021, 6, 1), datetime(2021, 9, 1), "summer 2021"),
    ("cat 2023-07-14", "cat", datetime(2023, 7, 14), datetime(2023, 7, 15), "2023-07-14"),
    ("party on 14 July 2023", "party", datetime(2023, 7, 14), datetime(2023, 7, 15), "2023-07-14"),
    ("snow in december 2020", "snow", datetime(2020, 12, 1), datetime(2021, 1, 1), "December 2020"),
    ("birthday party last month", "birthday party", datetime(2024, 9, 1), datetime(2024, 10, 1), "September 2024"),
    ("dogs 3 years ago", "dogs", datetime(2021, 1, 1), datetime(2022, 1, 1), "2021"),
])
def test_dates_become_a_range(query, text, after, before, said):
    d = split_date(query, TODAY)
    assert (d.text, d.after, d.before, d.said) == (text, after, before, said)


def test_message_says_what_is_searched():
    assert split_date("beach July 2023", TODAY).message() == "searching 'beach' taken in July 2023"


def test_last_summer_before_it_is_over_means_the_year_before():
    assert split_date("beach last summer", date(2024, 7, 1)).after == datetime(2023, 6, 1)


@pytest.mark.parametrize("query", [
    "a dog", "may flowers", "march of the penguins", "a 1950s car", "second sunday", "summer dress",
    "2 dogs", "July 2023",  # only a date: nothing left to search for, the words stay
])
def test_words_that_are_not_dates_stay(query):
    assert split_date(query, TODAY) is None
