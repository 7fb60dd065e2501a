"""COM's backup retention (REQUIREMENTS.md section 4; COM user guide ch. 6).

    keep(backups, today) -> set of the names to keep

A pure function: no I/O, no clock.  comsim.py applies it to the backups of
one system after each stored backup and when its simulated date changes,
and deletes the rest.

The rule, as the guide words it (Chinese edition, ch. 6 "备份和还原",
table row "存储多少个备份？"):

    manual:    "COM 服务器可为客户系统最多保留 3 个手动备份。当达到该限制时，
                新添加的手动备份将取代最早的手动备份。"
               -- at most 3 manual backups per system; when the limit is
               reached the newly added one replaces the oldest.
    automatic: "系统会保留以下时间的自动备份：• 前 6 天。• 过去 3 周的最后一天。
                • 过去 11 个月最后一天。"
               -- automatic backups are kept for: the previous 6 days; the
               last day of the past 3 weeks; the last day of the past 11
               months.

How this module reads it (the guide leaves these open):

1. Manual and automatic backups are independent: manual ones never count
   against the automatic rule or the other way round.  Manual backups are
   never expired by age; the 3 newest (by stored_at) are kept.

2. "The previous 6 days" are the 6 calendar days before today, and today
   itself is kept as well: today - 6 ... today, 7 days.  Each tier names the
   *past* units besides the current one, and the finer tier covers the
   current one: 6 previous days + today = the current week (every day of the
   current Monday-to-Sunday week lies within today - 6 ... today), 3 past
   weeks + the current one = 4 weeks ~ the current month, 11 past months +
   the current one = a year.  The wording agrees: 前 6 天 is "the 6 days
   before", not 最近 6 天 "the most recent 6 days".  (Counting today among
   the 6 would, on a Sunday, delete the current week's Monday backup, which
   no weekly "last day" protects: a hole inside the current week.)  Every
   automatic backup stored on one of those days is kept, even several on one
   day.

3. Weeks are calendar weeks, Monday to Sunday (ISO 8601; the guide's months
   are calendar months, so its weeks are calendar weeks too, and a Chinese
   week starts on Monday).  "The past 3 weeks" are the 3 weeks before the
   current one; "the last day" of such a week is its last backup: normally
   Sunday's, or the latest one that week has when Sunday's was missed (the
   daily backup is skipped when another operation blocks it).  A week that
   straddles a year or month end is still one week.

4. "The past 11 months" are the 11 calendar months before the current one;
   of each, the last backup it holds (normally the one of its last day:
   31 Jan, 28 or 29 Feb, ...).

5. Everything else is deleted.  An automatic backup dated after today (the
   simulated clock moved back) is kept: deleting data because a clock went
   backwards is never right.

"Newest"/"last" order: stored_at (a date, a datetime, or an ISO 8601 string
of either; a bare date sorts before any datetime of the same day), then the
optional field `seq`, then the position in the list -- so backups stored on
the same date compare by storage order.  Names are assumed unique.

Applied every day to daily backups, the rule keeps 19 to 21 automatic
backups, reaching back 12 months; what it keeps is the same whether it is
applied day by day or once.  (With long gaps it need not be: a month's last
backup is only protected once that month is over, so a backup more than 4
weeks older than everything else of the current month can go before it
would have become that month's last.)
"""

import datetime

MANUAL_MAX = 3
DAILY_DAYS = 6          # previous days kept (today is kept too)
WEEKS = 3
MONTHS = 11
KINDS = ("manual", "automatic")

__all__ = ["keep", "MANUAL_MAX", "DAILY_DAYS", "WEEKS", "MONTHS", "KINDS"]


def _field(b, name, default=None):
    if isinstance(b, dict):
        return b.get(name, default)
    return getattr(b, name, default)


def _moment(v):
    """(date, datetime or None) of a date, datetime or ISO string."""
    if isinstance(v, str):
        s = v.strip()
        if len(s) == 10:
            v = datetime.date.fromisoformat(s)
        else:
            if s.endswith("Z"):
                s = s[:-1] + "+00:00"
            v = datetime.datetime.fromisoformat(s)
    if isinstance(v, datetime.datetime):
        if v.tzinfo is not None:
            v = v.replace(tzinfo=None)   # a stored_at is in one zone (COM's)
        return v.date(), v
    if isinstance(v, datetime.date):
        return v, None
    raise TypeError("stored_at must be a date, a datetime or an ISO string, "
                    "not %r" % (v,))


def _day(v):
    return _moment(v)[0]


def _monday(d):
    return d - datetime.timedelta(days=d.weekday())


def _month_back(d, k):
    """(year, month) k months before d's month."""
    n = d.year * 12 + (d.month - 1) - k
    return n // 12, n % 12 + 1


def keep(backups, today):
    """The names of the backups to keep, per COM's retention rule (see the
    module docstring).  `backups`: iterable of dicts (or objects) with
    `name`, `kind` ("manual" | "automatic"), `stored_at` and optionally
    `seq`; `today`: a date, datetime or ISO string."""
    today = _day(today)
    manual, auto = [], []
    for i, b in enumerate(backups):
        name, kind = _field(b, "name"), _field(b, "kind")
        if kind not in KINDS:
            raise ValueError("backup %r: kind must be manual or automatic, not %r"
                             % (name, kind))
        day, when = _moment(_field(b, "stored_at"))
        seq = _field(b, "seq")
        # sort key: the day, a bare date before a time that day, then seq,
        # then the list position
        key = (day, when is not None, when.time() if when else datetime.time(),
               seq if isinstance(seq, (int, float)) and not isinstance(seq, bool)
               else float("-inf"), i)
        (manual if kind == "manual" else auto).append((key, day, name))

    kept = set()
    manual.sort()
    kept.update(name for _, _, name in manual[-MANUAL_MAX:])

    first_daily = today - datetime.timedelta(days=DAILY_DAYS)
    this_monday = _monday(today)
    weeks = {this_monday - datetime.timedelta(weeks=k) for k in range(1, WEEKS + 1)}
    months = {_month_back(today, k) for k in range(1, MONTHS + 1)}
    last_of = {}                    # period -> (key, name) of its last backup
    for key, day, name in auto:
        if day >= first_daily:      # the daily tier, and anything in the future
            kept.add(name)
        for period in (("w", _monday(day)), ("m", (day.year, day.month))):
            if period[1] in (weeks if period[0] == "w" else months):
                if period not in last_of or key > last_of[period][0]:
                    last_of[period] = (key, name)
    kept.update(name for _, name in last_of.values())
    return kept
