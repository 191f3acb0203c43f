"""Times in Slack messages, always as Slack's `<!date^…>` so each reader sees them in their own
time zone and a relative time ("5 minutes ago") stays true as long as the message is read. The
fallback (clients that cannot format dates, notifications, exports) is absolute UTC. Nothing
here writes a relative time as static text: it would be wrong a minute later."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


def slack_date(moment: datetime, tokens: str, fallback_format: str = "%Y-%m-%d %H:%M:%S") -> str:
    """`moment` in Slack's date formatting (`tokens` such as `{date_short_pretty} {time}`)."""
    utc = moment.astimezone(UTC)
    return f"<!date^{int(utc.timestamp())}^{tokens}|{utc.strftime(fallback_format)} UTC>"


def when(moment: datetime) -> str:
    """A date and time to the second ("Today 14:02:11"; fallback "2024-05-01 14:02:11 UTC")."""
    return slack_date(moment, "{date_short_pretty} {time_secs}")


def at(moment: datetime) -> str:
    """A date and time to the minute, for times that are coming (expiry, next possible run)."""
    return slack_date(moment, "{date_short_pretty} {time}", "%Y-%m-%d %H:%M")


def ago(moment: datetime) -> str:
    """How long ago, kept current by Slack ("17 minutes ago"); the fallback is the UTC time."""
    return slack_date(moment, "{ago}", "%Y-%m-%d %H:%M")


@dataclass(frozen=True, slots=True)
class GraphWindow:
    """The time span a graph shows, and the alert start it marks (None: no alert to mark)."""

    start: datetime
    end: datetime
    alert_start: datetime | None = None

    def text(self) -> str:
        span = f"{slack_date(self.start, '{date_short_pretty} {time}', '%Y-%m-%d %H:%M')}–{at_time(self.end)}"
        if self.alert_start is None:
            return span
        return f"{span} · alert started {when(self.alert_start)}"


def at_time(moment: datetime) -> str:
    """A time of day to the minute (the day being clear from what precedes it)."""
    return slack_date(moment, "{time}", "%H:%M")


def lasted(start: datetime, end: datetime) -> str:
    """How long something took between two fixed moments ("12m", "3h 5m"): not relative to
    now, so it never goes stale."""
    seconds = max(0, int((end - start).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes}m"
    return f"{hours // 24}d {hours % 24}h"
