"""The Django admin for runs and their logs, built to stay fast on millions of rows.

What the stock ModelAdmin does that this one does not, and why:
- no COUNT(*) of the table: the paginator counts at most COUNT_CAP + 1 rows and the page says
  "more than ..." beyond that (show_full_result_count off, facets never);
- no SELECT DISTINCT for filters: status and event type come from the contract's fixed lists,
  and the start-date filter is a fixed set of ranges (date_hierarchy would run DISTINCT);
- no LIKE search: a search term must equal an id, skill, caller or channel (see
  SkillRunQuerySet.named), so each is an index probe;
- list pages never load inputs, output, error or payloads, and the change page shows a
  bounded number of events with payload previews cut in the database;
- deleting never goes through Django's Collector, which would load every log of the run.
"""

from __future__ import annotations

from datetime import UTC

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.actions import delete_selected
from django.contrib.admin.utils import quote
from django.contrib.admin.views.main import ChangeList, ChangeListSearchForm
from django.core.paginator import Paginator
from django.core.validators import MinValueValidator, ProhibitNullCharactersValidator
from django.http import Http404
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator

from . import contract, costs, formats, jsontext, pricing
from .models import ModelPrice, SkillRun, SkillRunLog

# Rows a list counts before it says "more than"; deep pages stay reachable up to here.
COUNT_CAP = 10_000
# Events shown on a run's change page, latest first.
EVENTS_SHOWN = 50
EVENT_PREVIEW_CHARS = 200
# Runs the admin deletes in one confirmation; more is a job for `manage.py purge_runs`.
MAX_DELETE = 1_000


class CappedCountPaginator(Paginator):
    """Exact counts up to COUNT_CAP; past it the count stops at COUNT_CAP + 1."""

    cap = COUNT_CAP

    @cached_property
    def count(self):
        bounded_count = getattr(self.object_list, "bounded_count", None)
        if bounded_count is None:  # the history page pages admin LogEntry rows: few
            return super().count
        return bounded_count(self.cap)

    @property
    def count_is_capped(self) -> bool:
        return self.count > self.cap


class FixedChoicesFilter(admin.SimpleListFilter):
    """A filter whose options are a fixed list, so the page never asks the table for them."""

    values: tuple[str, ...] = ()

    def lookups(self, request, model_admin):
        return [(value, value.replace("_", " ")) for value in self.values]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        # Any value, known or not: another writer may have stored a status we do not list.
        return queryset.filter(**{self.parameter_name: contract.clean_text(value)})


class StatusFilter(FixedChoicesFilter):
    title = "status"
    parameter_name = "status"
    values = contract.KNOWN_STATUSES


class EventTypeFilter(FixedChoicesFilter):
    title = "event type"
    parameter_name = "event_type"
    values = contract.EVENT_TYPES


def dashboard_url(run_id: str) -> str:
    # The id quoted whole, dots too: reverse() would leave "q/../victim" for browsers to
    # shorten into another run's page.
    return reverse("runs:run_detail", args=["RUNID"]).replace(
        "RUNID", contract.run_id_segment(run_id), 1
    )


def run_change_url(run_id: str) -> str:
    return reverse("admin:runs_skillrun_change", args=[quote(run_id)])


class InputsField(forms.JSONField):
    """The inputs JSON: an object, cleaned like the contract cleans it, never a 500."""

    def to_python(self, value):
        try:
            return super().to_python(value)
        except RecursionError:
            raise forms.ValidationError("This JSON is nested too deeply.") from None

    def bound_data(self, data, initial):
        try:
            return super().bound_data(data, initial)
        except RecursionError:
            return forms.fields.InvalidJSONInput(data)

    def validate(self, value):
        super().validate(value)
        if value is not None and not isinstance(value, dict):
            raise forms.ValidationError("Inputs must be a JSON object ({...}).")
        # Python parses JSON a little deeper than it can write it back from the save path
        # (same recursion limit, deeper stack), so bound the depth well below both; the
        # API's limit (executors may store deeper: the page then shows a notice instead).
        if jsontext.depth_exceeds(value, jsontext.MAX_JSON_DEPTH):
            raise forms.ValidationError(
                f"This JSON is nested too deeply (more than {jsontext.MAX_JSON_DEPTH} levels)."
            )

    def clean(self, value):
        value = super().clean(value)
        try:
            return contract.clean_object(value, "inputs")
        except ValueError as exc:
            raise forms.ValidationError(str(exc)) from None
        except RecursionError:
            raise forms.ValidationError("This JSON is nested too deeply.") from None


class SkillRunForm(forms.ModelForm):
    class Meta:
        model = SkillRun
        # What an admin may fix; ids, names, start time and parent are the audit record.
        fields = (
            "status",
            "finished_at",
            "output",
            "error",
            "tool_calls_count",
            "runtime_seconds",
            "total_input_tokens",
            "total_output_tokens",
            "total_thinking_tokens",
            "inputs",
        )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        status = self.fields.get("status")
        current = self.instance.status if self.instance.pk else ""
        # A status another writer stored stays selectable, so fixing another field of the
        # run does not force a status change.
        if status is not None and current and current not in contract.KNOWN_STATUSES:
            status.choices = [*status.choices, (current, f"{current} (not a known status)")]
        for name in (
            "tool_calls_count",
            "total_input_tokens",
            "total_output_tokens",
            "total_thinking_tokens",
        ):
            if name in self.fields:
                self.fields[name].validators.append(MinValueValidator(0))
        if "runtime_seconds" in self.fields:
            self.fields["runtime_seconds"].validators.append(MinValueValidator(0))

    def _get_validation_exclusions(self):
        # The form field checks the status (the known ones plus the stored one); the model
        # field's own choices check would refuse a stored status that it does not know.
        return {*super()._get_validation_exclusions(), "status"}

    def clean(self):
        cleaned = super().clean()
        finished_at = cleaned.get("finished_at")
        started_at = self.instance.started_at
        if finished_at and started_at and finished_at < started_at:
            self.add_error("finished_at", "A run cannot finish before it started.")
        return cleaned


class SearchForm(ChangeListSearchForm):
    """The stock search box, minus its refusal of NUL: a refused term would show every row.

    The term is cleaned like stored ids (NUL becomes U+FFFD), so it matches what is stored.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            field.validators = [
                v for v in field.validators if not isinstance(v, ProhibitNullCharactersValidator)
            ]


class ListedLookupsOnly:
    """Filtering by the lookups the page's own filters offer, nothing else.

    The stock lookup_allowed lets a query string filter by any lookup of any local field:
    `?output__regex=^(.|.)*X$` held a SQLite worker for 30 s, and `?inputs__contains=x` was
    a 500 on SQLite. Anything not listed here is Django's 400 (DisallowedModelAdminLookup).
    """

    allowed_lookups: frozenset[str] = frozenset()

    def lookup_allowed(self, lookup, value, request=None):
        return lookup in self.allowed_lookups

    def get_object(self, request, object_id, from_field=None):
        # No stored id holds NUL (the contract cleans it to U+FFFD), and PostgreSQL refuses
        # it in a query (a 500): such an id names nothing.
        if "\x00" in object_id:
            raise Http404("No object has an id with a NUL character.")
        return super().get_object(request, object_id, from_field)


class RunChangeList(ChangeList):
    search_form_class = SearchForm

    def get_queryset(self, request, exclude_parameters=None):
        return super().get_queryset(request, exclude_parameters).without_big_columns()


@admin.register(SkillRun)
class SkillRunAdmin(ListedLookupsOnly, admin.ModelAdmin):
    form = SkillRunForm
    # StatusFilter's parameter and the start-date filter's range.
    allowed_lookups = frozenset({"status", "started_at__gte", "started_at__lt"})
    list_display = (
        "id",
        "skill_id",
        "caller_id",
        "channel_id",
        "status",
        "started",
        "duration",
        "tokens",
    )
    list_filter = (StatusFilter, ("started_at", admin.DateFieldListFilter))
    # Only columns with an index that starts with them; others would sort the whole table.
    sortable_by = ("id", "started")
    ordering = ("-started_at", "-id")
    search_fields = ("id", "skill_id", "caller_id", "channel_id")
    search_help_text = "An exact run id, skill, caller or channel."
    list_per_page = 50
    list_max_show_all = 200
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    actions = ("mark_running_as_error", "mark_running_as_timeout", "delete_selected_runs")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "dashboard_link",
                    "skill_id",
                    "caller_id",
                    "channel_id",
                    "parent_link",
                    "started_at",
                )
            },
        ),
        ("Outcome", {"fields": ("status", "finished_at", "output", "error")}),
        (
            "Usage",
            {
                "fields": (
                    "tool_calls_count",
                    "runtime_seconds",
                    "total_input_tokens",
                    "total_output_tokens",
                    "total_thinking_tokens",
                    "cost",
                )
            },
        ),
        ("Inputs", {"fields": ("inputs",)}),
        ("Events", {"fields": ("latest_events",)}),
    )
    readonly_fields = (
        "id",
        "dashboard_link",
        "skill_id",
        "caller_id",
        "channel_id",
        "parent_link",
        "started_at",
        "latest_events",
        "cost",
    )

    def get_changelist(self, request, **kwargs):
        return RunChangeList

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name == "inputs":
            return InputsField(required=False, help_text="A JSON object.")
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    def get_object(self, request, object_id, from_field=None):
        try:
            return super().get_object(request, object_id, from_field)
        except RecursionError:
            # Inputs nested deeper than Python parses, stored by another program: open the
            # run without them (they are kept as they are) instead of failing with a 500.
            run = self.get_queryset(request).defer("inputs").filter(pk=object_id).first()
            if run is not None:
                run.inputs_unreadable = True
            return run

    def get_fieldsets(self, request, obj=None):
        if getattr(obj, "inputs_unreadable", False):
            return [
                (
                    name,
                    {"fields": ["inputs_notice" if f == "inputs" else f for f in opts["fields"]]},
                )
                for name, opts in self.fieldsets
            ]
        return self.fieldsets

    def get_readonly_fields(self, request, obj=None):
        if getattr(obj, "inputs_unreadable", False):
            return (*self.readonly_fields, "inputs_notice")
        return self.readonly_fields

    def get_actions(self, request):
        actions = super().get_actions(request)
        # Replaced by delete_selected_runs, which bounds the selection.
        actions.pop("delete_selected", None)
        return actions

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.named(term), False

    def has_add_permission(self, request):
        # Runs are recorded by executors; a hand-made run would be a forged audit entry.
        return False

    class Media:
        # The changelist fits 1,440 px: ids wrap instead of widening the table.
        css = {"all": ("runs/admin.css",)}

    # --- list columns ----------------------------------------------------------------

    @admin.display(description="started", ordering="started_at")
    def started(self, run):
        """As the dashboard shows it: UTC, with the zone."""
        utc = run.started_at.astimezone(UTC)
        return format_html(
            '<time datetime="{}">{}</time>', utc.isoformat(), f"{utc:%Y-%m-%d %H:%M:%S} UTC"
        )

    @admin.display(description="duration")
    def duration(self, run):
        if run.finished_at is None:
            return "-"
        return formats.seconds(
            run.runtime_seconds or (run.finished_at - run.started_at).total_seconds()
        )

    @admin.display(description="tokens in/out/think")
    def tokens(self, run):
        return (
            f"{run.total_input_tokens:,}/{run.total_output_tokens:,}/{run.total_thinking_tokens:,}"
        )

    # --- change page -----------------------------------------------------------------

    @admin.display(description="dashboard")
    def dashboard_link(self, run):
        return format_html('<a href="{}">View in dashboard</a>', dashboard_url(run.id))

    @admin.display(description="parent run")
    def parent_link(self, run):
        if not run.parent_run_id:
            return "- (top-level run)"
        # The parent may have been purged already; the link then says so when followed.
        return format_html(
            '<a href="{}">{}</a>', run_change_url(run.parent_run_id), run.parent_run_id
        )

    @admin.display(description="inputs")
    def inputs_notice(self, run):
        return (
            "Nested too deeply to parse, so not shown here; kept unchanged. "
            "The dashboard shows the raw JSON."
        )

    @admin.display(description="cost")
    def cost(self, run):
        """Priced when shown (runs.pricing), from the model prices below in this admin."""
        if run.pk is None:
            return "-"
        found = pricing.run_costs([run])[run.pk]
        title = ""
        if found.partly_unpriced:
            names = ", ".join(m or "(no model named)" for m in sorted(found.unpriced_models)[:5])
            title = f"; no price for {found.unpriced_tokens:,} tokens: {names}"
        return f"{costs.display(found)}{title}"

    @admin.display(description="latest events")
    def latest_events(self, run):
        of_run = SkillRunLog.objects.for_run(run.id)
        total = of_run.count()
        if not total:
            return "No events recorded."
        rows = format_html_join(
            "\n",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            (
                (
                    event.sequence,
                    event.event_type,
                    timezone.localtime(event.created_at).isoformat(sep=" "),
                    Truncator(event.payload_preview).chars(EVENT_PREVIEW_CHARS),
                )
                for event in of_run.reverse().timeline()[:EVENTS_SHOWN]
            ),
        )
        shown = min(total, EVENTS_SHOWN)
        return format_html(
            "<p>The latest {} of {} events, newest first. "
            '<a href="{}">All {} events in the dashboard timeline</a></p>'
            "<table><thead><tr><th>#</th><th>event</th><th>time</th><th>payload</th></tr>"
            "</thead><tbody>{}</tbody></table>",
            shown,
            total,
            dashboard_url(run.id),
            total,
            rows,
        )

    # --- actions ---------------------------------------------------------------------

    def _close_running(self, request, queryset, status):
        closed = queryset.close_running(status, timezone.now())
        self.message_user(
            request,
            f"Marked {closed} running run(s) as {status}; selected runs that were not "
            "running were left unchanged.",
            messages.SUCCESS if closed else messages.WARNING,
        )

    @admin.action(description="Mark selected running runs as error", permissions=["change"])
    def mark_running_as_error(self, request, queryset):
        self._close_running(request, queryset, contract.STATUS_ERROR)

    @admin.action(description="Mark selected running runs as timeout", permissions=["change"])
    def mark_running_as_timeout(self, request, queryset):
        self._close_running(request, queryset, contract.STATUS_TIMEOUT)

    @admin.action(description="Delete selected runs and their logs", permissions=["delete"])
    def delete_selected_runs(self, request, queryset):
        if queryset.bounded_count(MAX_DELETE) > MAX_DELETE:
            self.message_user(
                request,
                f"Select at most {MAX_DELETE} runs to delete here; "
                "`manage.py purge_runs` deletes old runs in bulk.",
                messages.ERROR,
            )
            return None
        return delete_selected(self, request, queryset)

    # --- deleting --------------------------------------------------------------------

    def get_deleted_objects(self, objs, request):
        """What the confirmation page lists: the runs (bounded) and a count of their logs.

        Django's version collects every related log to list it: 100,000 rows for a big
        run. Logs go with their run, so deleting a run needs only the run permission.
        """
        runs = list(objs[: MAX_DELETE + 1]) if hasattr(objs, "model") else list(objs)
        log_count = SkillRunLog.objects.for_runs([run.pk for run in runs]).count()
        listed = [
            format_html('{}: <a href="{}">{}</a>', "Skill run", run_change_url(run.pk), run)
            for run in runs[:100]
        ]
        if len(runs) > 100:
            listed.append(f"... and {len(runs) - 100} more runs")
        listed.append(f"{log_count} log event(s) of these runs (not listed one by one)")
        model_count = {
            SkillRun._meta.verbose_name_plural: len(runs),
            SkillRunLog._meta.verbose_name_plural: log_count,
        }
        return listed, model_count, set(), []

    def delete_model(self, request, obj):
        SkillRun.objects.delete_with_logs([obj.pk])

    def delete_queryset(self, request, queryset):
        # At most MAX_DELETE runs (delete_selected_runs), so one transaction.
        SkillRun.objects.delete_with_logs(list(queryset.values_list("pk", flat=True)))


class LogChangeList(ChangeList):
    search_form_class = SearchForm

    def get_ordering(self, request, queryset):
        # The newest events overall, or, for one run, its events by sequence: each is an
        # index scan (the primary key, or the unique (run_id, sequence) index backwards).
        if self.query:
            return ["run_id", "-sequence"]
        return ["-id"]


@admin.register(SkillRunLog)
class SkillRunLogAdmin(ListedLookupsOnly, admin.ModelAdmin):
    allowed_lookups = frozenset({"event_type"})
    list_display = ("run_link", "sequence", "event_type", "created_at", "payload_head")
    list_display_links = ("sequence",)
    list_filter = (EventTypeFilter,)
    sortable_by = ()
    search_fields = ("run_id",)
    search_help_text = "An exact run id: its events, latest first."
    list_per_page = 50
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = CappedCountPaginator
    fields = ("run_link", "sequence", "event_type", "created_at", "payload_text")
    readonly_fields = fields

    def get_changelist(self, request, **kwargs):
        return LogChangeList

    def get_queryset(self, request):
        # Payloads are never loaded whole or parsed: previews are cut in the database.
        return super().get_queryset(request).timeline()

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        # for_run orders by sequence; keep the list's ordering (LogChangeList).
        run_id = contract.clean_id(term)
        return queryset.for_run(run_id).order_by(*queryset.query.order_by), False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        # Logs go with their run (SkillRunAdmin, purge_runs), never one by one.
        return False

    @admin.display(description="run")
    def run_link(self, log):
        return format_html('<a href="{}">{}</a>', run_change_url(log.run_id), log.run_id)

    @admin.display(description="payload")
    def payload_head(self, log):
        return Truncator(log.payload_preview).chars(EVENT_PREVIEW_CHARS)

    @admin.display(description="payload")
    def payload_text(self, log):
        shown = log.payload_preview
        if log.payload_size <= len(shown):
            return format_html("<pre>{}</pre>", jsontext.pretty_text(shown)[0] or shown)
        return format_html(
            "<pre>{}</pre><p>The first {} of {} characters. "
            '<a href="{}">The whole event is in the dashboard timeline</a></p>',
            shown,
            len(shown),
            log.payload_size,
            dashboard_url(log.run_id),
        )


class ModelPriceForm(forms.ModelForm):
    class Meta:
        model = ModelPrice
        fields = (
            "model",
            "provider",
            "input_per_million",
            "output_per_million",
            "cached_input_per_million",
            "thinking_per_million",
            "currency",
            "valid_from",
            "note",
        )
        help_texts = {
            "model": "An exact model name as steps carry it (gpt-4o-2024-08-06), or a pattern "
            "where * stands for any text (gpt-4o*). An exact name beats a pattern; among "
            "patterns the longest text before the first * wins.",
            "valid_from": "The price applies to runs started from this time until a later "
            "row of the same model and provider.",
            "cached_input_per_million": "Empty: cached input tokens cost the input price.",
            "thinking_per_million": "Empty: thinking tokens cost the output price.",
            "currency": "A three-letter code such as USD.",
        }


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """The model price table: costs are computed from it when shown, so an edit here
    applies to every run's cost at once (runs.costs)."""

    form = ModelPriceForm
    list_display = (
        "model",
        "provider",
        "input_per_million",
        "output_per_million",
        "cached_input_per_million",
        "thinking_per_million",
        "currency",
        "valid_from",
    )
    list_filter = ("provider", "currency")
    search_fields = ("model", "provider")
    search_help_text = "Part of a model name or provider."
    ordering = ("model", "provider", "-valid_from")
    list_per_page = 100
