"""Calendar arithmetic on Unix timestamps (UTC), shared by billing and discounts."""

from __future__ import annotations

import calendar
import datetime as dt

DAY = 86400


def add_interval(ts: int, interval: str, count: int, anchor_day: int | None = None) -> int:
    d = dt.datetime.fromtimestamp(ts, dt.timezone.utc)
    if interval == "day":
        return ts + count * DAY
    if interval == "week":
        return ts + count * 7 * DAY
    months = count if interval == "month" else 12 * count
    m = d.month - 1 + months
    year, month = d.year + m // 12, m % 12 + 1
    day = min(anchor_day or d.day, calendar.monthrange(year, month)[1])
    return int(d.replace(year=year, month=month, day=day).timestamp())
