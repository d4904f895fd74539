"""The run-list filter: query string -> contract.RunFilter -> SkillRun.objects.matching().

One definition serves the HTML list and the API. It is always bound (an empty query
string means the defaults: top-level runs, no dry runs), it refuses every invalid, unknown
or repeated parameter instead of dropping it, and it never widens the result.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

import django_filters
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone as django_timezone

from . import contract, search
from .models import SkillRun

STALE = "stale"
# status=failed: any of the failed statuses (status=error,timeout lists them one by one).
STATUS_GROUPS = {"failed": contract.FAILED_STATUSES}
# Labels are the stored names, as the badges show them ("budget_exceeded", not a
# prettier spelling an operator then cannot find on the page).
STATUS_CHOICES = [("", "any status")]
STATUS_CHOICES += [(g, f"{g} ({', '.join(s)})") for g, s in STATUS_GROUPS.items()]
STATUS_CHOICES += [(s, s) for s in contract.KNOWN_STATUSES]
STATUS_CHOICES.append((STALE, "stale (running too long)"))
# since=-24h, until=-7d: that long before now (m minutes, h hours, d days).
RELATIVE = re.compile(r"-(\d{1,6})([mhd])")
RELATIVE_UNITS = {"m": "minutes", "h": "hours", "d": "days"}

# The databases store years 1..9999; bounds are kept a day inside so that converting
# them between time zones can never overflow.
EARLIEST = datetime(1, 1, 2, tzinfo=UTC)
LATEST = datetime(9999, 12, 30, tzinfo=UTC)

TRUE_VALUES = {"1", "true", "on", "yes"}
FALSE_VALUES = {"", "0", "false", "off", "no"}


def parse_bool(value: str | None) -> bool:
    """A query-string flag: 1/true/on/yes or 0/false/off/no (absent or empty = no).

    ValueError for anything else: a misspelt "ture" read as "no" would silently change
    what a page or an API answer shows. Every face reads its flags through this.
    """
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in TRUE_VALUES:
        return True
    if text in FALSE_VALUES:
        return False
    raise ValueError("must be 1 or 0 (or true/false)")


class StrictBooleanField(forms.Field):
    """A form field over parse_bool."""

    def to_python(self, value):
        try:
            return parse_bool(value)
        except ValueError as exc:
            raise ValidationError(str(exc), code="invalid") from None


class IsoDateTimeField(forms.Field):
    """An ISO 8601 date or date-time; without an offset it is UTC. Returned in UTC.

    Also a time relative to now (-1h, -24h, -7d, -30m), and a date alone, which means that
    whole day in UTC: its start, or for an end bound (``end_of_day``) the next day's start,
    so that until=2026-12-02 includes the 2nd.
    """

    def __init__(self, *args, end_of_day=False, **kwargs):
        self.end_of_day = end_of_day
        super().__init__(*args, **kwargs)

    def to_python(self, value):
        if value in (None, ""):
            return None
        text = str(value).strip()
        if len(text) > 40:
            raise ValidationError("is too long for a date-time", code="invalid")
        relative = RELATIVE.fullmatch(text)
        if relative:
            amount = timedelta(**{RELATIVE_UNITS[relative[2]]: int(relative[1])})
            return max(django_timezone.now() - amount, EARLIEST)
        if len(text) <= 10 and not any(c in text for c in "T :"):
            try:
                day = date.fromisoformat(text)
            except ValueError:
                pass
            else:
                start = datetime.combine(day, time(), tzinfo=UTC)
                if self.end_of_day:
                    start = start + timedelta(days=1) if day < date.max else LATEST
                return min(max(start, EARLIEST), LATEST)
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            try:
                parsed = datetime.combine(date.fromisoformat(text), time())
            except ValueError:
                raise ValidationError(
                    "is not an ISO 8601 date-time (e.g. 2026-11-26T09:30:00Z), a date "
                    "(2026-11-26) or a time before now (-1h, -24h, -7d)",
                    code="invalid",
                ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        try:
            parsed = parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError("is outside the years 1 to 9999", code="invalid") from None
        # Clamping inside the storable range cannot widen the result: no run is stored
        # outside it.
        return min(max(parsed, EARLIEST), LATEST)


class CleanCharField(forms.CharField):
    """Free text cleaned the way stored ids are (NUL and surrogates become U+FFFD)."""

    def to_python(self, value):
        value = super().to_python(value)
        return contract.clean_text(value) if value else value


class IsoDateTimeFilter(django_filters.Filter):
    field_class = IsoDateTimeField


class StatusListField(forms.Field):
    """One status, several separated by commas (error,timeout), or a group (failed).

    Returned as a tuple of statuses. ``stale`` stands alone: it is a running run started
    before a threshold, which a list of statuses cannot say.
    """

    def to_python(self, value):
        if value in (None, ""):
            return ()
        text = str(value)
        if len(text) > 200:
            raise ValidationError("is too long", code="invalid")
        statuses: list[str] = []
        for name in (part.strip() for part in text.split(",")):
            if name in STATUS_GROUPS:
                statuses.extend(STATUS_GROUPS[name])
            elif name in contract.KNOWN_STATUSES or name == STALE:
                statuses.append(name)
            else:
                known = ", ".join([*STATUS_GROUPS, *contract.KNOWN_STATUSES, STALE])
                raise ValidationError(
                    f"{contract.clean_text(name)[:40]!r} is not a status (one of {known}, "
                    "or several separated by commas)",
                    code="invalid",
                )
        statuses = list(dict.fromkeys(statuses))
        if STALE in statuses and len(statuses) > 1:
            raise ValidationError("stale cannot be combined with other statuses", code="invalid")
        return tuple(statuses)


class StatusFilter(django_filters.Filter):
    field_class = StatusListField


class StrictBooleanFilter(django_filters.Filter):
    field_class = StrictBooleanField


class IdFilter(django_filters.CharFilter):
    field_class = CleanCharField


class SearchField(CleanCharField):
    """``q``, parsed once into runs.search's tree (None when blank: no search); a q with
    no word to search for is an error, never "everything"."""

    def clean(self, value):
        try:
            return search.parse(super().clean(value))
        except search.SearchError as exc:
            raise ValidationError(str(exc), code="invalid") from None


class SearchFilter(IdFilter):
    field_class = SearchField


class RunFilterSet(django_filters.FilterSet):
    status = StatusFilter(label="Status")
    skill = IdFilter(max_length=contract.NAME_MAX_LENGTH, label="Skill")
    caller = IdFilter(max_length=contract.NAME_MAX_LENGTH, label="Caller")
    channel = IdFilter(max_length=contract.NAME_MAX_LENGTH, label="Channel")
    since = IsoDateTimeFilter(label="Since (UTC)")
    until = IsoDateTimeFilter(label="Until (UTC)", end_of_day=True)
    include_nested = StrictBooleanFilter(label="Include nested runs")
    include_dry_run = StrictBooleanFilter(label="Include dry runs")
    # The run failed, one of its tool calls failed, or a run below it failed.
    failed = StrictBooleanFilter(label="Failed (run, tool or sub-run)")
    q = SearchFilter(max_length=search.MAX_QUERY_CHARS, label="Search")

    class Meta:
        model = SkillRun
        fields: list[str] = []

    def __init__(self, data=None, queryset=None, *, request=None, prefix=None, extra_params=()):
        """``extra_params`` are the other parameters the caller understands (paging)."""
        data = data if data is not None else {}
        self.problems = parameter_problems(data, set(self.base_filters) | set(extra_params))
        # Always bound: a bare URL means "the defaults", which must be designed, not hoped.
        super().__init__(
            {key: data.get(key) for key in data}, queryset, request=request, prefix=prefix
        )

    def is_valid(self):
        return not self.problems and super().is_valid()

    def get_form_class(self):
        """The form class, built once: django-filters builds a new class with new fields
        for every request. Its fields depend on nothing in the request (each form still
        copies them, as Django forms do)."""
        cls = type(self)
        if "_form_class" not in cls.__dict__:
            cls._form_class = super().get_form_class()
        return cls._form_class

    @property
    def error_messages(self) -> dict[str, list[str]]:
        """Every problem, keyed by the parameter it is about."""
        messages = {key: list(value) for key, value in self.problems.items()}
        if self.problems:
            return messages
        for field, errors in self.form.errors.items():
            messages.setdefault(field, []).extend(errors)
        return messages

    def run_filter(self, now: datetime | None = None) -> contract.RunFilter:
        """The contract filter for valid data (call is_valid() first)."""
        data = self.form.cleaned_data
        statuses = data.get("status") or ()
        # Several statuses are applied by filter_queryset; dry runs are then only shown
        # when dry_run is one of them (the IN list says so).
        status = statuses[0] if len(statuses) == 1 else ""
        until = data.get("until")
        if status == STALE:
            # "stale" = running rows started before the stale threshold: a narrower until.
            status = contract.STATUS_RUNNING
            threshold = (now or django_timezone.now()) - stale_after()
            until = threshold if until is None else min(until, threshold)
        return contract.RunFilter(
            status=status,
            skill_id=data.get("skill") or "",
            caller_id=data.get("caller") or "",
            channel_id=data.get("channel") or "",
            top_level_only=not data.get("include_nested"),
            include_dry_run=bool(data.get("include_dry_run")) or len(statuses) > 1,
            since=data.get("since"),
            until=until,
        )

    def filter_queryset(self, queryset):
        qs = queryset.matching(self.run_filter())
        statuses = self.form.cleaned_data.get("status") or ()
        if len(statuses) > 1:
            qs = qs.with_statuses(statuses)
        if self.form.cleaned_data.get("failed"):
            qs = qs.failed()
        query = self.search_query
        return qs if query is None else qs.searching(query)

    @property
    def search_query(self) -> search.SearchQuery | None:
        """The parsed ``q`` of valid data (None: no search)."""
        return self.form.cleaned_data.get("q")

    def active(self) -> dict[str, str]:
        """The parameters in effect, for links that keep the current filters."""
        return {
            name: self.data[name]
            for name in self.base_filters
            if self.data.get(name) not in (None, "")
        }


def parameter_problems(data, allowed: set[str]) -> dict[str, list[str]]:
    """Unknown and repeated parameters: refused, since ignoring them would widen the result."""
    problems: dict[str, list[str]] = {}
    for key in data:
        if key not in allowed:
            problems[contract.clean_text(key)[:100]] = ["is not a known parameter"]
        elif hasattr(data, "getlist") and len(data.getlist(key)) > 1:
            problems[key] = ["is given more than once"]
    return problems


def stale_after() -> timedelta:
    return timedelta(minutes=settings.SKILLAUDIT_STALE_AFTER_MINUTES)


# --- /stats/ and GET /api/stats/ ------------------------------------------------------

STATS_WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
STATS_DEFAULT_WINDOW = "7d"
STATS_BUCKETS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}
# At most this many buckets in a series: 31 days of hours (a month by the hour still
# answers; a year by the hour, 8,760 points nobody can read, is a 400 naming bucket).
STATS_MAX_BUCKETS = 800
# Without bucket=: hours up to two days, days beyond.
STATS_HOURLY_UP_TO = timedelta(days=2)


def floor_to(moment: datetime, unit: timedelta) -> datetime:
    """The start (UTC) of the hour or day ``moment`` falls in."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return moment - ((moment - epoch) % unit)


class StatsStatusField(StatusListField):
    def to_python(self, value):
        statuses = super().to_python(value)
        if STALE in statuses:
            raise ValidationError(
                "stale is a state of running runs now, not a status the stats count",
                code="invalid",
            )
        return statuses


class StatsForm(forms.Form):
    window = forms.ChoiceField(choices=[(w, w) for w in STATS_WINDOWS], required=False)
    since = IsoDateTimeField(required=False)
    until = IsoDateTimeField(required=False, end_of_day=True)
    bucket = forms.ChoiceField(choices=[(b, b) for b in STATS_BUCKETS], required=False)
    skill = CleanCharField(max_length=contract.NAME_MAX_LENGTH, required=False)
    caller = CleanCharField(max_length=contract.NAME_MAX_LENGTH, required=False)
    channel = CleanCharField(max_length=contract.NAME_MAX_LENGTH, required=False)
    status = StatsStatusField(required=False)
    include_nested = StrictBooleanField(required=False)


class StatsParameters:
    """The query string of /stats/ and GET /api/stats/ -> selectors.StatsQuery.

    ``window=24h|7d|30d`` (default 7d) or ``since``/``until`` (the list's syntax; until
    defaults to now, since to a week before until), ``bucket=hour|day`` (default: hours
    for a window of two days or less), and the list's filters ``skill``, ``caller``,
    ``channel``, ``status`` (no ``stale``) and ``include_nested`` (default: top-level runs).
    The window is widened to whole buckets (since rounded down, until up; until is
    exclusive), since the buckets are whole UTC hours and days. Unknown or repeated
    parameters, window with since/until, an empty window, or more than
    STATS_MAX_BUCKETS buckets are errors naming the parameter.
    """

    def __init__(self, data=None):
        data = data if data is not None else {}
        self.data = data
        self.problems = parameter_problems(data, set(StatsForm.base_fields))
        self.form = StatsForm({key: data.get(key) for key in data})
        self._query = None

    def is_valid(self, now: datetime | None = None) -> bool:
        if self.problems or not self.form.is_valid():
            return False
        try:
            self._query = self._build(now or django_timezone.now())
        except ValidationError as exc:
            self.problems = dict(exc.message_dict)
            return False
        return True

    @property
    def error_messages(self) -> dict[str, list[str]]:
        messages = {key: list(value) for key, value in self.problems.items()}
        if not messages and self.form.is_bound:
            for field, errors in self.form.errors.items():
                messages.setdefault(field, []).extend(errors)
        return messages

    def query(self, now: datetime | None = None):
        """The StatsQuery of valid data (call is_valid() first)."""
        if self._query is None:
            self._query = self._build(now or django_timezone.now())
        return self._query

    def _build(self, now: datetime):
        from .selectors import StatsQuery

        data = self.form.cleaned_data
        window = data.get("window") or ""
        since, until = data.get("since"), data.get("until")
        if window and (since or until):
            raise ValidationError({"window": ["cannot be combined with since or until"]})
        if since is None and until is None:
            until = now
            since = now - STATS_WINDOWS[window or STATS_DEFAULT_WINDOW]
        elif until is None:
            until = max(now, since)
        elif since is None:
            since = max(until - STATS_WINDOWS[STATS_DEFAULT_WINDOW], EARLIEST)
        if since >= until:
            raise ValidationError({"until": ["must be after since"]})
        bucket = data.get("bucket") or ("hour" if until - since <= STATS_HOURLY_UP_TO else "day")
        unit = STATS_BUCKETS[bucket]
        start = floor_to(since, unit)
        end = floor_to(until, unit)
        if end < until:
            end = min(end + unit, LATEST)
        buckets = (end - start) // unit
        if buckets > STATS_MAX_BUCKETS:
            raise ValidationError(
                {
                    "bucket": [
                        f"the window has {buckets} {bucket}s; at most {STATS_MAX_BUCKETS} "
                        "buckets (use bucket=day or a shorter window)"
                    ]
                }
            )
        return StatsQuery(
            since=start,
            until=end,
            bucket=bucket,
            skill_id=data.get("skill") or "",
            caller_id=data.get("caller") or "",
            channel_id=data.get("channel") or "",
            statuses=tuple(data.get("status") or ()),
            top_level_only=not data.get("include_nested"),
        )
