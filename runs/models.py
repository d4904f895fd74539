"""The two audit tables. Column names follow the Go executor so both can share a database."""

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from . import contract, costs, lookups  # noqa: F401  (registers CharField __is_empty)
from .managers import (
    ModelPriceManager,
    OtlpTraceManager,
    RunModelUsageManager,
    SkillRunCountManager,
    SkillRunLogManager,
    SkillRunManager,
    SkillRunStatManager,
    SkillSummaryManager,
)


class Status(models.TextChoices):
    RUNNING = contract.STATUS_RUNNING, "running"
    OK = contract.STATUS_OK, "ok"
    ERROR = contract.STATUS_ERROR, "error"
    TIMEOUT = contract.STATUS_TIMEOUT, "timeout"
    BUDGET_EXCEEDED = contract.STATUS_BUDGET_EXCEEDED, "budget exceeded"
    DRY_RUN = contract.STATUS_DRY_RUN, "dry run"
    PREEMPTED = contract.STATUS_PREEMPTED, "preempted"
    LANE_BUSY = contract.STATUS_LANE_BUSY, "lane busy"


ROLLUPS = ("failed_tools", "failed_descendants")


class SkillRun(models.Model):
    id = models.CharField(primary_key=True, max_length=contract.ID_MAX_LENGTH)
    skill_id = models.CharField(max_length=contract.NAME_MAX_LENGTH)
    caller_id = models.CharField(max_length=contract.NAME_MAX_LENGTH, blank=True, default="")
    channel_id = models.CharField(max_length=contract.NAME_MAX_LENGTH, blank=True, default="")
    inputs = models.JSONField(default=dict, blank=True)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    # Free text in the database (another writer may add statuses); forms offer the known ones.
    status = models.CharField(max_length=contract.STATUS_MAX_LENGTH, choices=Status.choices)
    output = models.TextField(blank=True, default="")
    error = models.TextField(blank=True, default="")
    tool_calls_count = models.BigIntegerField(default=0)
    runtime_seconds = models.FloatField(default=0)
    # A plain string, not a foreign key: a parent may be purged before its children.
    parent_run_id = models.CharField(max_length=contract.ID_MAX_LENGTH, blank=True, default="")
    total_input_tokens = models.BigIntegerField(default=0)
    total_output_tokens = models.BigIntegerField(default=0)
    total_thinking_tokens = models.BigIntegerField(default=0)
    # Failure roll-ups, written only by the triggers of migration 0010 (for every writer):
    # failed tool results among the run's events, failed runs below it in the call tree.
    # A database default, so an INSERT that does not name them (the Go executor's) works.
    failed_tools = models.BigIntegerField(db_default=0, editable=False)
    failed_descendants = models.BigIntegerField(db_default=0, editable=False)

    objects = SkillRunManager()

    class Meta:
        db_table = "skill_runs"
        ordering = ["-started_at", "-id"]
        # Each index serves one contract query; tests/test_query_plans.py proves it.
        indexes = [
            # the unfiltered feed and since/until ranges; skill_id and status make it cover
            # the skills page's count of the runs in the part of an hour that the summed
            # skill_run_counts buckets leave (an index-only range scan)
            models.Index(fields=["-started_at", "-id", "skill_id", "status"], name="runs_started"),
            # the dashboard default: top-level runs only
            models.Index(
                fields=["-started_at", "-id"],
                name="runs_toplevel_started",
                condition=Q(parent_run_id=""),
            ),
            # The dashboard's default list is top-level runs: one filter plus that, walked
            # in list order. Status last, so the list's bounded count (status <> dry_run)
            # is an index-only scan: a busy caller's 1,001 rows are counted from the index,
            # where the full index needs a heap visit per row for parent and status.
            models.Index(
                fields=["skill_id", "-started_at", "-id", "status"],
                name="runs_toplevel_skill",
                condition=Q(parent_run_id=""),
            ),
            models.Index(
                fields=["caller_id", "-started_at", "-id", "status"],
                name="runs_toplevel_caller",
                condition=Q(parent_run_id=""),
            ),
            models.Index(
                fields=["channel_id", "-started_at", "-id", "status"],
                name="runs_toplevel_channel",
                condition=Q(parent_run_id=""),
            ),
            models.Index(
                fields=["status", "-started_at", "-id"],
                name="runs_toplevel_status",
                condition=Q(parent_run_id=""),
            ),
            models.Index(fields=["status", "-started_at", "-id"], name="runs_status_started"),
            models.Index(fields=["caller_id", "-started_at", "-id"], name="runs_caller_started"),
            models.Index(fields=["channel_id", "-started_at", "-id"], name="runs_channel_started"),
            # per-skill pages and last_run_by_skills(include_failed=True)
            models.Index(fields=["skill_id", "-started_at", "-id"], name="runs_skill_started"),
            # per-skill counts (index-only) and last_run_by_skills(include_failed=False)
            models.Index(fields=["skill_id", "status", "started_at"], name="runs_skill_status"),
            models.Index(
                fields=["parent_run_id", "started_at", "id"],
                name="runs_children",
                condition=~Q(parent_run_id=""),
            ),
            models.Index(
                fields=["finished_at", "id"],
                name="runs_finished",
                condition=Q(finished_at__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.skill_id} {self.id}"

    def save(self, *args, **kwargs):
        """An UPDATE never writes the roll-ups: a form loaded before a child failed would
        put back the old count (the triggers keep them; see migration 0010)."""
        if not self._state.adding and kwargs.get("update_fields") is None:
            deferred = self.get_deferred_fields()
            kwargs["update_fields"] = [
                f.name
                for f in self._meta.concrete_fields
                if not f.primary_key and f.attname not in deferred and f.name not in ROLLUPS
            ]
        return super().save(*args, **kwargs)


class SkillRunLog(models.Model):
    id = models.BigAutoField(primary_key=True)
    # The unique (run, sequence) constraint serves lookups by run; no second index.
    run = models.ForeignKey(
        SkillRun,
        on_delete=models.CASCADE,
        db_column="run_id",
        db_index=False,
        related_name="logs",
    )
    sequence = models.BigIntegerField()
    event_type = models.CharField(max_length=contract.EVENT_TYPE_MAX_LENGTH)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField()

    objects = SkillRunLogManager()

    class Meta:
        db_table = "skill_run_logs"
        ordering = ["run_id", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["run", "sequence"], name="run_logs_run_sequence"),
        ]

    def __str__(self):
        return f"{self.run_id} #{self.sequence} {self.event_type}"


class SkillRunCount(models.Model):
    """How many runs of a skill with a status started in an hour or a day (UTC).

    Written only by the triggers on skill_runs that migration 0006 installs, in the writing
    transaction, so every writer (the Go executor too) keeps it exact. The skills page sums
    a week from it instead of counting the week's runs: at 1M runs that is ~6,000 rows
    instead of ~78,000, and it grows with the number of skills, not with the traffic.
    ``SkillRunCount.objects.rebuild()`` recounts it after writes made with triggers off.
    """

    class Span(models.TextChoices):
        HOUR = "hour"
        DAY = "day"

    span = models.CharField(max_length=4, choices=Span.choices)
    period_start = models.DateTimeField()
    skill_id = models.CharField(max_length=contract.NAME_MAX_LENGTH)
    status = models.CharField(max_length=contract.STATUS_MAX_LENGTH)
    runs = models.BigIntegerField()

    objects = SkillRunCountManager()

    class Meta:
        db_table = "skill_run_counts"
        constraints = [
            models.UniqueConstraint(
                fields=["span", "period_start", "skill_id", "status"], name="run_counts_bucket"
            ),
        ]
        indexes = [
            # A page of the skills page reads its skills' buckets: a range per skill (the
            # bucket key would read every skill's buckets of the week). It does not cover
            # `runs`, so the triggers' updates stay HOT (migration 0006).
            models.Index(fields=["skill_id", "span", "period_start"], name="run_counts_skill"),
        ]

    def __str__(self):
        return f"{self.span} {self.period_start:%Y-%m-%d %H:00} {self.skill_id} {self.status}"


class SkillSummary(models.Model):
    """One row per skill that has runs: what the skills page sorts and shows of it.

    Written only by the triggers on skill_runs that migration 0011 installs, in the writing
    transaction, so every writer (the Go executor's plain SQL, the API, OTLP, imports, the
    admin, purges) keeps it exact; a skill's row goes when its last run does. The page is
    then an index range of this table (one index per sort order, created per engine by the
    migration: PostgreSQL needs NULLS LAST, SQLite puts NULLs last when descending), not a
    pass over every skill's runs (2-5 s at 20,000 skills before; see bench/RESULTS.md).
    A count over the last 7 days cannot live here: it changes with the clock, with no write
    to fire a trigger, so those come from skill_run_counts for the page's skills only.
    ``SkillSummary.objects.rebuild()`` recounts it after writes made with triggers off.
    """

    skill_id = models.CharField(max_length=contract.NAME_MAX_LENGTH, primary_key=True)
    runs = models.BigIntegerField()
    # Newest started_at of a finished run (not running, not a dry run), of an ok run and
    # of a failed run (contract.FAILED_STATUSES); null when the skill has none.
    last_run_at = models.DateTimeField(null=True)
    last_ok_at = models.DateTimeField(null=True)
    last_failed_at = models.DateTimeField(null=True)

    objects = SkillSummaryManager()

    class Meta:
        db_table = "skill_summaries"

    def __str__(self):
        return f"{self.skill_id}: {self.runs} runs"


class OtlpTrace(models.Model):
    """A trace received over OTLP (POST /v1/traces): its spans, and the runs derived from them.

    ``spans`` holds every span received for the trace, as one serialized opentelemetry-proto
    ScopeSpans message (keyed inside by span id: a re-sent span replaces its copy). One row
    per trace, not per span: at 11 spans a trace that is 11 times fewer rows and index
    entries to write, and a trace is read back whole anyway. ``run_ids`` are the skill_runs
    rows the trace produced last time: when more of its spans arrive, those rows are replaced
    by the ones derived from all of them (runs.services.otlp).
    """

    trace_id = models.CharField(primary_key=True, max_length=32)
    spans = models.BinaryField()
    span_count = models.IntegerField(default=0)
    run_ids = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField()

    objects = OtlpTraceManager()

    class Meta:
        db_table = "otlp_traces"

    def __str__(self):
        return self.trace_id


class ModelPrice(models.Model):
    """A model's list price per million tokens from ``valid_from`` on (runs.costs prices usage).

    ``model`` is a name as steps carry it (``gpt-4o-2024-08-06``) or a pattern with ``*``
    (``gpt-4o*``); which row prices a step is runs.costs's rule (exact beats pattern, the
    longest literal prefix among patterns, the latest ``valid_from`` not after the step).
    An empty cached-input or thinking price bills those tokens at the input or output price.
    Costs are computed when read, never stored: an edited row applies to every run at once.
    """

    PRICE_DIGITS = 14
    PRICE_DECIMALS = 6

    model = models.CharField(max_length=contract.NAME_MAX_LENGTH)
    provider = models.CharField(max_length=100, blank=True, default="")
    input_per_million = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    output_per_million = models.DecimalField(max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS)
    cached_input_per_million = models.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True, blank=True
    )
    thinking_per_million = models.DecimalField(
        max_digits=PRICE_DIGITS, decimal_places=PRICE_DECIMALS, null=True, blank=True
    )
    currency = models.CharField(max_length=3, default="USD")
    valid_from = models.DateTimeField()
    note = models.CharField(max_length=500, blank=True, default="")

    objects = ModelPriceManager()

    class Meta:
        db_table = "model_prices"
        ordering = ["model", "provider", "-valid_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "provider", "valid_from"], name="model_prices_model_from"
            ),
            models.CheckConstraint(
                condition=Q(input_per_million__gte=0)
                & Q(output_per_million__gte=0)
                & (Q(cached_input_per_million__isnull=True) | Q(cached_input_per_million__gte=0))
                & (Q(thinking_per_million__isnull=True) | Q(thinking_per_million__gte=0)),
                name="model_prices_not_negative",
            ),
            models.CheckConstraint(condition=~Q(model=""), name="model_prices_model_named"),
        ]

    def __str__(self):
        provider = f" ({self.provider})" if self.provider else ""
        return f"{self.model}{provider} from {self.valid_from:%Y-%m-%d}"

    def as_price(self) -> costs.Price:
        return costs.Price(
            model=self.model,
            provider=self.provider,
            valid_from=self.valid_from,
            input_per_million=self.input_per_million,
            output_per_million=self.output_per_million,
            cached_input_per_million=self.cached_input_per_million,
            thinking_per_million=self.thinking_per_million,
            currency=self.currency,
            note=self.note,
        )

    def clean(self):
        """The admin's form checks what runs.costs checks (currency, names, signs)."""
        super().clean()
        if self.valid_from is None or any(
            v is None for v in (self.input_per_million, self.output_per_million)
        ):
            return
        try:
            self.as_price().check()
        except costs.PriceError as problem:
            raise ValidationError(str(problem)) from problem


class SkillRunStat(models.Model):
    """Runs of a skill with a status started in an hour or a day (UTC), top-level or nested,
    with the sums of their token totals: what /stats/ and GET /api/stats/ read.

    Written only by the triggers of migration 0012, in the writing transaction, whoever
    writes (see SkillRunCount for the same pattern). A 30-day series reads ~30 day rows per
    skill and status, not the window's runs. ``SkillRunStat.objects.rebuild()`` recounts
    this table and the three below after writes made with triggers off.
    """

    span = models.CharField(max_length=4, choices=SkillRunCount.Span.choices)
    period_start = models.DateTimeField()
    skill_id = models.CharField(max_length=contract.NAME_MAX_LENGTH)
    top_level = models.BooleanField()
    status = models.CharField(max_length=contract.STATUS_MAX_LENGTH)
    runs = models.BigIntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    thinking_tokens = models.BigIntegerField()

    objects = SkillRunStatManager()

    class Meta:
        db_table = "skill_run_stats"
        constraints = [
            models.UniqueConstraint(
                fields=["span", "period_start", "skill_id", "top_level", "status"],
                name="run_stats_bucket",
            ),
        ]

    def __str__(self):
        return f"{self.span} {self.period_start:%Y-%m-%d %H:00} {self.skill_id} {self.status}"


class SkillRunRuntime(models.Model):
    """A runtime histogram: finished runs (status other than running) of a skill started in
    an hour or a day, by log-scale bin of runtime_seconds.

    Bin b holds runtimes in [1.1**b, 1.1**(b+1)) seconds (runtimes_bin()), bin
    ZERO_RUNTIME_BIN the runtimes of 0 or less; a percentile read as the bin's geometric
    midpoint is within sqrt(1.1) - 1 = 4.9% of the exact value (tests/test_stats_buckets.py).
    Kept by migration 0012's triggers, like SkillRunStat.
    """

    span = models.CharField(max_length=4, choices=SkillRunCount.Span.choices)
    period_start = models.DateTimeField()
    skill_id = models.CharField(max_length=contract.NAME_MAX_LENGTH)
    top_level = models.BooleanField()
    bin = models.IntegerField()
    runs = models.BigIntegerField()

    class Meta:
        db_table = "skill_run_runtimes"
        constraints = [
            models.UniqueConstraint(
                fields=["span", "period_start", "skill_id", "top_level", "bin"],
                name="run_runtimes_bucket",
            ),
        ]
        indexes = [
            # /stats/'s first skills' histograms (SkillRunStatManager._bucket_reads): their
            # days only, not the window's rows of every skill (migration 0016). top_level
            # last: the nested runs' rows are skipped in the index, not fetched from the
            # table and then filtered out (40% of the rows read; migration 0021).
            models.Index(
                fields=["skill_id", "span", "period_start", "top_level"],
                name="run_runtimes_skill_window",
            ),
        ]

    def __str__(self):
        return f"{self.span} {self.period_start:%Y-%m-%d %H:00} {self.skill_id} bin {self.bin}"


class RunModelUsage(models.Model):
    """A run's token usage by model: the sums over its ``step`` events naming that model
    (the step payload's ``model``; "" when it names none), for its cost.

    Kept by migration 0012's triggers on skill_run_logs (step events only), whoever writes.
    A plain run_id, like parent_run_id: the row goes with the run's last step or the run.
    """

    run_id = models.CharField(max_length=contract.ID_MAX_LENGTH)
    model = models.CharField(max_length=255)
    steps = models.BigIntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField()
    thinking_tokens = models.BigIntegerField()

    objects = RunModelUsageManager()

    class Meta:
        db_table = "skill_run_model_usage"
        constraints = [
            models.UniqueConstraint(fields=["run_id", "model"], name="run_model_usage_key"),
        ]

    def __str__(self):
        return f"{self.run_id} {self.model or '(no model)'}"


class ModelUsageStat(models.Model):
    """Token usage by model of the runs of a skill started in an hour or a day: the sums of
    RunModelUsage over those runs, and ``runs``, how many of them used the model. /stats/
    prices cost per day and per skill from these rows (at read time: a price edit applies
    at once). Kept by migration 0012's triggers.
    """

    span = models.CharField(max_length=4, choices=SkillRunCount.Span.choices)
    period_start = models.DateTimeField()
    skill_id = models.CharField(max_length=contract.NAME_MAX_LENGTH)
    top_level = models.BooleanField()
    model = models.CharField(max_length=255)
    runs = models.BigIntegerField()
    steps = models.BigIntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField()
    thinking_tokens = models.BigIntegerField()

    class Meta:
        db_table = "skill_model_usage_stats"
        constraints = [
            models.UniqueConstraint(
                fields=["span", "period_start", "skill_id", "top_level", "model"],
                name="model_usage_stats_bucket",
            ),
        ]
        indexes = [
            # the skills page: its 100 skills' days (SkillRunStatManager.skill_usage)
            models.Index(
                fields=["skill_id", "span", "period_start"], name="model_usage_stats_skill"
            ),
        ]

    def __str__(self):
        return f"{self.span} {self.period_start:%Y-%m-%d %H:00} {self.skill_id} {self.model}"


# --- the stats buckets of all skills together (migration 0016) ---------------------------


class AllSkillsRunStat(models.Model):
    """SkillRunStat summed over the skills: runs with a status started in an hour or a day,
    top-level or nested, and their token sums. /stats/'s series and window totals read these
    (30 days: ~30 rows per status) instead of every skill's day rows (issue 18: at 1M runs
    the 200 skills' rows made /stats/ 412-462 ms p95). Kept by the same triggers, in the
    same statements (migration 0016), whoever writes.
    """

    span = models.CharField(max_length=4, choices=SkillRunCount.Span.choices)
    period_start = models.DateTimeField()
    top_level = models.BooleanField()
    status = models.CharField(max_length=contract.STATUS_MAX_LENGTH)
    runs = models.BigIntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    thinking_tokens = models.BigIntegerField()

    class Meta:
        db_table = "all_skills_run_stats"
        constraints = [
            models.UniqueConstraint(
                fields=["span", "period_start", "top_level", "status"],
                name="all_skills_run_stats_bucket",
            ),
        ]

    def __str__(self):
        return f"{self.span} {self.period_start:%Y-%m-%d %H:00} {self.status}"


class AllSkillsRuntime(models.Model):
    """SkillRunRuntime summed over the skills: the runtime histogram of every skill's
    finished runs per hour or day (30 days: ~1,800 rows at 1M runs instead of ~360,000)."""

    span = models.CharField(max_length=4, choices=SkillRunCount.Span.choices)
    period_start = models.DateTimeField()
    top_level = models.BooleanField()
    bin = models.IntegerField()
    runs = models.BigIntegerField()

    class Meta:
        db_table = "all_skills_runtimes"
        constraints = [
            models.UniqueConstraint(
                fields=["span", "period_start", "top_level", "bin"],
                name="all_skills_runtimes_bucket",
            ),
        ]

    def __str__(self):
        return f"{self.span} {self.period_start:%Y-%m-%d %H:00} bin {self.bin}"


class AllSkillsModelUsage(models.Model):
    """ModelUsageStat summed over the skills: token usage by model per hour or day, for the
    cost per period and of the window."""

    span = models.CharField(max_length=4, choices=SkillRunCount.Span.choices)
    period_start = models.DateTimeField()
    top_level = models.BooleanField()
    model = models.CharField(max_length=255)
    runs = models.BigIntegerField()
    steps = models.BigIntegerField()
    input_tokens = models.BigIntegerField()
    output_tokens = models.BigIntegerField()
    cached_input_tokens = models.BigIntegerField()
    thinking_tokens = models.BigIntegerField()

    class Meta:
        db_table = "all_skills_model_usage_stats"
        constraints = [
            models.UniqueConstraint(
                fields=["span", "period_start", "top_level", "model"],
                name="all_skills_model_usage_bucket",
            ),
        ]

    def __str__(self):
        return f"{self.span} {self.period_start:%Y-%m-%d %H:00} {self.model}"
