"""COM's backup retention rule (retention.keep), no comsim needed.

    /usr/bin/python3 -m pytest tests/comsim/test_retention.py

A calendar of daily automatic backups simulated day by day (store today's
backup, keep(), delete the rest) and what must remain on chosen dates;
manual backups; the two kinds independent.  The expected sets are written
out by hand from the rule (retention.py's docstring), not computed.
"""

import datetime
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from retention import keep  # noqa: E402

D = datetime.date


def day(s):
    return D.fromisoformat(s)


def name(d):
    return "auto-%s" % d.isoformat()


def days(first, last):
    """Inclusive range of ISO dates."""
    a, b = day(first), day(last)
    return [(a + datetime.timedelta(n)).isoformat() for n in range((b - a).days + 1)]


def simulate(first, last, skip=()):
    """One automatic backup a day from first to last (except the dates in
    skip), retention applied after each.  Returns {date: sorted dates held
    at the end of that day}."""
    held = []
    seen = {}
    for d in days(first, last):
        if d not in skip:
            held.append({"name": name(day(d)), "kind": "automatic", "stored_at": day(d)})
        k = keep(held, day(d))
        assert k <= {b["name"] for b in held}
        held = [b for b in held if b["name"] in k]
        seen[d] = sorted(b["stored_at"].isoformat() for b in held)
    return seen


@pytest.fixture(scope="module")
def calendar():
    # two years and a bit: 2023 fills the monthly tier, 2024 is a leap year
    return simulate("2023-01-01", "2025-01-05")


MONTH_ENDS_2023 = ["2023-01-31", "2023-02-28", "2023-03-31", "2023-04-30",
                   "2023-05-31", "2023-06-30", "2023-07-31", "2023-08-31",
                   "2023-09-30", "2023-10-31", "2023-11-30", "2023-12-31"]
MONTH_ENDS_2024 = ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30",
                   "2024-05-31", "2024-06-30", "2024-07-31", "2024-08-31",
                   "2024-09-30", "2024-10-31", "2024-11-30", "2024-12-31"]

EXPECTED = {
    # Sunday, year end, end of ISO week 2023-W52.  Today + 6 previous days
    # (= the whole current week), the Sundays of the 3 weeks before, the last
    # days of Jan..Nov 2023.
    "2023-12-31": MONTH_ENDS_2023[:11] + ["2023-12-10", "2023-12-17", "2023-12-24"]
    + days("2023-12-25", "2023-12-31"),
    # Monday, new year, new week: 31 Jan 2023 (now 12 months back) and
    # Sunday 10 Dec (4 weeks back) are gone; last week's Sunday (31 Dec) is
    # in the daily tier anyway, and is December's last day.
    "2024-01-01": MONTH_ENDS_2023[1:11] + ["2023-12-17", "2023-12-24"]
    + days("2023-12-26", "2024-01-01"),
    # Thursday, leap day
    "2024-02-29": MONTH_ENDS_2023[2:] + ["2024-01-31", "2024-02-11", "2024-02-18"]
    + days("2024-02-23", "2024-02-29"),
    # Friday, the day after: February (its last day 29) is a past month now;
    # 31 Mar 2023 is 12 months back.
    "2024-03-01": MONTH_ENDS_2023[3:] + ["2024-01-31", "2024-02-11", "2024-02-18"]
    + days("2024-02-24", "2024-03-01"),
    # Saturday: 24 Feb (a Saturday, not its week's last day) has left the
    # daily tier.
    "2024-03-02": MONTH_ENDS_2023[3:] + ["2024-01-31", "2024-02-11", "2024-02-18",
                                         "2024-02-25"]
    + days("2024-02-25", "2024-03-02"),
    # Sunday, week end
    "2024-03-03": MONTH_ENDS_2023[3:] + ["2024-01-31", "2024-02-11", "2024-02-18",
                                         "2024-02-25"]
    + days("2024-02-26", "2024-03-03"),
    # Monday, week start: Sunday 11 Feb is 4 weeks back; Monday 26 Feb left
    # the daily tier; Sunday 3 Mar is last week's last day.
    "2024-03-04": MONTH_ENDS_2023[3:] + ["2024-01-31", "2024-02-18", "2024-02-25"]
    + days("2024-02-27", "2024-03-04"),
    # Tuesday, month end
    "2024-04-30": MONTH_ENDS_2023[4:] + MONTH_ENDS_2024[:3] + ["2024-04-14", "2024-04-21"]
    + days("2024-04-24", "2024-04-30"),
    # Wednesday, first of May: April is past; its last day was a Tuesday.
    "2024-05-01": MONTH_ENDS_2023[5:] + MONTH_ENDS_2024[:4] + ["2024-04-14", "2024-04-21"]
    + days("2024-04-25", "2024-05-01"),
    # Tuesday, year end, inside ISO week 2025-W01 (Mon 30 Dec 2024 ..)
    "2024-12-31": MONTH_ENDS_2024[:11] + ["2024-12-15", "2024-12-22"]
    + days("2024-12-25", "2024-12-31"),
    # Wednesday, new year: Jan 2024 is 12 months back; the leap day is the
    # oldest backup left.
    "2025-01-01": MONTH_ENDS_2024[1:11] + ["2024-12-15", "2024-12-22"]
    + days("2024-12-26", "2025-01-01"),
    # Sunday: the week that straddles the year end (30 Dec .. 5 Jan) is the
    # current one.
    "2025-01-05": MONTH_ENDS_2024[1:11] + ["2024-12-15", "2024-12-22", "2024-12-29"]
    + days("2024-12-30", "2025-01-05"),
}


@pytest.mark.parametrize("date", sorted(EXPECTED))
def test_calendar(calendar, date):
    assert calendar[date] == sorted(set(EXPECTED[date]))


def test_calendar_counts(calendar):
    """Once a year of history exists, 19 to 21 automatic backups are held,
    the oldest about 12 months back, today's always among them."""
    for d, held in calendar.items():
        if d >= "2023-12-01":
            assert 19 <= len(held) <= 21, (d, held)
            assert (day(d) - day(held[0])).days <= 366, (d, held[0])
        assert held[-1] == d
    # the early days: everything is kept for the first week
    assert calendar["2023-01-07"] == days("2023-01-01", "2023-01-07")
    # 1 Jan 2023 (a Sunday) is the last day of the week before 2 Jan's
    assert calendar["2023-01-08"] == days("2023-01-01", "2023-01-08")
    assert calendar["2023-01-09"] == ["2023-01-01"] + days("2023-01-03", "2023-01-09")


def test_day_by_day_equals_once(calendar):
    """With daily backups, applying the rule once to the full history gives
    what applying it every day gave."""
    full = [{"name": name(day(d)), "kind": "automatic", "stored_at": d}
            for d in days("2023-01-01", "2025-01-05")]
    for d in ("2023-12-31", "2024-02-29", "2024-03-04", "2024-07-15", "2025-01-05"):
        upto = [b for b in full if b["stored_at"] <= d]
        assert sorted(n[5:] for n in keep(upto, d)) == calendar[d]


def test_missed_days():
    """A skipped daily backup: the week's / month's last backup is the
    latest one it has."""
    # no backup on Sunday 18 Feb 2024 nor on 29 Feb, 1 Mar .. 3 Mar
    skip = {"2024-02-18", "2024-02-29", "2024-03-01", "2024-03-02", "2024-03-03"}
    seen = simulate("2023-03-01", "2024-03-20", skip=skip)
    held = seen["2024-03-20"]
    # week 12..18 Feb is 5 weeks back by now; week 26 Feb .. 3 Mar is 2
    # weeks back: its last backup is Wednesday 28 Feb, which is also
    # February's last.
    assert "2024-02-28" in held and "2024-02-17" not in held
    assert held == sorted(set(MONTH_ENDS_2023[3:] + ["2024-01-31", "2024-02-28",
                                                     "2024-03-10", "2024-03-17"]
                              + days("2024-03-14", "2024-03-20")))
    # on 26 Feb the week before (12..18 Feb, 2 weeks back) ends on Saturday 17
    assert "2024-02-17" in seen["2024-02-26"]


def test_several_a_day_and_times():
    """Datetimes: the daily tier keeps all of a day; a week's or month's last
    backup is the latest by time; ISO strings work; seq breaks ties."""
    bs = [
        {"name": "a", "kind": "automatic", "stored_at": "2024-05-26T02:30:00"},
        {"name": "b", "kind": "automatic", "stored_at": "2024-05-26T03:10:00"},
        {"name": "c", "kind": "automatic", "stored_at": "2024-05-26T01:00:00"},
        {"name": "d", "kind": "automatic",
         "stored_at": datetime.datetime(2024, 6, 3, 2, 0)},
        {"name": "e", "kind": "automatic",
         "stored_at": datetime.datetime(2024, 6, 3, 2, 0, 1)},
        {"name": "f", "kind": "automatic", "stored_at": "2024-05-31", "seq": 2},
        {"name": "g", "kind": "automatic", "stored_at": "2024-05-31", "seq": 1},
    ]
    # Sunday 2 Jun: daily 27 May .. 2 Jun (f, g) and the future (d, e); the
    # week 20..26 May ends with b (03:10); May's last is f (seq 2 > 1).
    assert keep(bs, "2024-06-02") == {"b", "d", "e", "f", "g"}
    # Sunday 9 Jun: daily d, e; last week's last f; b; May's last f
    assert keep(bs, D(2024, 6, 9)) == {"b", "d", "e", "f"}
    # a time on 31 May sorts after the bare dates of that day
    bs.append({"name": "h", "kind": "automatic", "stored_at": "2024-05-31T00:00:01Z"})
    assert keep(bs, datetime.datetime(2024, 6, 9, 12, 0)) == {"b", "d", "e", "h"}


def test_future_kept():
    bs = [{"name": "x", "kind": "automatic", "stored_at": "2030-01-01"},
          {"name": "y", "kind": "automatic", "stored_at": "2020-01-01"}]
    assert keep(bs, "2025-06-01") == {"x"}


def test_manual_newest_three():
    bs = [{"name": "m%d" % i, "kind": "manual", "stored_at": "2024-0%d-01" % i}
          for i in (3, 1, 5, 2, 4)]
    assert keep(bs, "2024-06-01") == {"m3", "m4", "m5"}
    # age does not matter for manual backups
    assert keep(bs, "2030-01-01") == {"m3", "m4", "m5"}
    # same date: storage order (seq, else list position)
    same = [{"name": n, "kind": "manual", "stored_at": D(2024, 1, 1)}
            for n in ("p", "q", "r", "s", "t")]
    assert keep(same, "2024-01-01") == {"r", "s", "t"}
    same[4]["seq"] = 1
    for i, b in enumerate(same[:4]):
        b["seq"] = 10 + i
    assert keep(same, "2024-01-01") == {"q", "r", "s"}
    # simulated one at a time: the newest replaces the oldest
    held = []
    for i in range(1, 6):
        held.append({"name": "m%d" % i, "kind": "manual",
                     "stored_at": "2024-01-%02d" % i})
        k = keep(held, "2024-01-%02d" % i)
        held = [b for b in held if b["name"] in k]
        assert [b["name"] for b in held] == ["m%d" % j for j in range(max(1, i - 2), i + 1)]


def test_mixed_independent():
    """Manual backups neither count against nor protect automatic ones."""
    autos = [{"name": name(day(d)), "kind": "automatic", "stored_at": d}
             for d in days("2024-03-01", "2024-03-31")]
    manuals = [{"name": "man-%d" % i, "kind": "manual", "stored_at": d}
               for i, d in enumerate(["2024-03-02", "2024-03-29", "2024-03-30",
                                      "2024-03-31", "2024-03-31"])]
    both = keep(autos + manuals, "2024-03-31")
    assert both == keep(autos, "2024-03-31") | keep(manuals, "2024-03-31")
    assert both & {m["name"] for m in manuals} == {"man-2", "man-3", "man-4"}
    # Sunday 31 Mar: daily 25..31, Sundays 10, 17, 24 (current month: no
    # monthly backup of March yet)
    assert sorted(n for n in both if n.startswith("auto")) == \
        [name(day(d)) for d in ["2024-03-10", "2024-03-17", "2024-03-24"]
         + days("2024-03-25", "2024-03-31")]
    # an old manual backup survives where an automatic one of that day goes
    old = [{"name": "old-auto", "kind": "automatic", "stored_at": "2023-01-15"},
           {"name": "old-man", "kind": "manual", "stored_at": "2023-01-15"}]
    assert keep(old, "2024-03-31") == {"old-man"}


def test_bad_input():
    with pytest.raises(ValueError):
        keep([{"name": "x", "kind": "weekly", "stored_at": "2024-01-01"}], "2024-01-01")
    with pytest.raises(TypeError):
        keep([{"name": "x", "kind": "manual", "stored_at": 5}], "2024-01-01")
    assert keep([], "2024-01-01") == set()
