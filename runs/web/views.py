"""The trace-review dashboard's views: parse, read through selectors and managers, render."""

from __future__ import annotations

import functools
import re
from datetime import UTC, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.db import DatabaseError
from django.db.models import TextField
from django.db.models.functions import Cast
from django.http import Http404, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from .. import contract, costs, cursors, jsontext, pricing, selectors
from ..filters import STATUS_CHOICES, RunFilterSet, parameter_problems, parse_bool, stale_after
from ..models import SkillRun, SkillRunCount, SkillRunLog, SkillSummary
from ..services import export
from . import presentation, rendering, trace

PAGE_SIZE = 50
# The list's page sizes (page_size=); the default is PAGE_SIZE.
PAGE_SIZES = (25, 50, 100, 200)
# The list's time presets: since=<value>, shown as links above the list.
TIME_PRESETS = (("-1h", "last hour"), ("-24h", "last 24 h"), ("-7d", "last 7 days"))
SUGGESTIONS = 20
# The list shows an exact count up to this many runs, "more than" beyond it.
COUNT_CAP = 1000
CHILDREN_SHOWN = 100
VIEW_PERMISSION = "runs.view_skillrun"


def dashboard_view(view):
    """Logged-in active users with the view permission, staff or not (the admin is what
    needs staff); anonymous users go to the dashboard's login page."""

    @functools.wraps(view)
    def wrapper(request, *args, **kwargs):
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        if not (user.is_active and user.has_perm(VIEW_PERMISSION)):
            # A response, not PermissionDenied: Django logs each PermissionDenied with its
            # traceback, so any logged-in user could flood the log by reloading a page.
            return render(request, "403.html", status=403)
        return view(request, *args, **kwargs)

    return require_GET(wrapper)


def bad_request(request, errors: dict[str, list[str]]):
    """The 400 page; its link goes back to the same page with only the bad parameters
    removed (every other filter kept)."""
    kept = [
        (key, value)
        for key, value in request.GET.items()
        if key not in errors and contract.clean_text(key)[:100] not in errors
    ]
    back = request.path + (f"?{urlencode(kept)}" if kept else "")
    context = {"errors": errors, "back": back, "dropped": sorted(errors)}
    return render(request, "runs/bad_request.html", context, status=400)


@dashboard_view
def home(request):
    return redirect("runs:run_list")


# --- run list --------------------------------------------------------------------------


@dashboard_view
def run_list(request):
    filterset = RunFilterSet(
        request.GET, queryset=SkillRun.objects.all(), extra_params=("after", "before", "page_size")
    )
    if not filterset.is_valid():
        return bad_request(request, filterset.error_messages)
    page_size = request.GET.get("page_size") or str(PAGE_SIZE)
    if page_size not in {str(n) for n in PAGE_SIZES}:
        sizes = ", ".join(str(n) for n in PAGE_SIZES)
        return bad_request(request, {"page_size": [f"must be one of {sizes}"]})
    page_size = int(page_size)
    after, before = request.GET.get("after"), request.GET.get("before")
    if after and before:
        return bad_request(request, {"after": ["cannot be combined with before"]})
    matching = filterset.qs
    try:
        page = selectors.newest_first_page(
            matching,
            page_size,
            after=cursors.decode(after) if after else None,
            before=cursors.decode(before) if before else None,
        )
    except cursors.InvalidCursor as exc:
        return bad_request(request, {"after" if after else "before": [str(exc)]})
    rows, has_older, has_newer = page.rows, page.has_older, page.has_newer
    selectors.with_has_children(rows)
    pricing.with_costs(rows)
    cap = COUNT_CAP
    if filterset.search_query is not None:
        selectors.with_search_snippets(rows, filterset.search_query)
        # A search counts no further than its page ("more than 50"): a common word's
        # matches are found by probing runs one by one, so counting them would walk the
        # history (bench/search.py: 20 s for 100 matches of a common phrase at 100k runs).
        cap = len(rows)
        count = cap + 1 if (after or before or has_older) else cap
    elif after or before or has_older:
        count = matching.bounded_count(cap)
    else:
        count = len(rows)  # the first page holds every matching run: no count to ask
    context = {
        "filterset": filterset,
        "form": filterset.form,
        "runs": rows,
        "count": min(count, cap),
        "count_is_capped": count > cap,
        "older_cursor": cursors.encode(rows[-1].started_at, rows[-1].id) if has_older else None,
        "newer_cursor": cursors.encode(rows[0].started_at, rows[0].id)
        if has_newer and rows
        else None,
        "paged": bool(after or before),
        "stale_before": timezone.now() - stale_after(),
        "filtered": bool(filterset.active()),
        "query_params": list(request.GET.items()),
        "page_size": page_size,
        "page_sizes": PAGE_SIZES,
        "default_page_size": PAGE_SIZE,
        "status_choices": _status_choices(request.GET.get("status", "")),
        "time_presets": TIME_PRESETS,
        "since_value": request.GET.get("since", ""),
    }
    context["nav"] = "runs"
    return render(request, "runs/run_list.html", context)


class LoginView(auth_views.LoginView):
    """The dashboard's own login page (not the admin's): any active user may log in; what
    they then see depends on their permissions (dashboard_view)."""

    template_name = "runs/login.html"
    redirect_authenticated_user = True


class LogoutView(auth_views.LogoutView):
    next_page = "runs:login"


def _status_choices(current: str) -> list[tuple[str, str]]:
    """The status select's options; a list the select does not offer (error,timeout) is
    added as it is, so submitting the form again keeps it instead of widening to any."""
    choices = list(STATUS_CHOICES)
    if current and current not in {value for value, _ in choices}:
        choices.append((current, current))
    return choices


SUGGESTED_FIELDS = {"skill": "skill_id", "caller": "caller_id", "channel": "channel_id"}


@dashboard_view
def suggest(request, field):
    """{"values": [...]}: up to SUGGESTIONS known skills, callers or channels starting
    with ``prefix``, for the list's inputs (static/runs/list.js fills their datalists).
    One index probe per value (SkillRunManager.values_from), however many runs each has."""
    if field not in SUGGESTED_FIELDS:
        raise Http404("no such field")
    problems = parameter_problems(request.GET, {"prefix"})
    prefix = request.GET.get("prefix", "")
    if len(prefix) > contract.NAME_MAX_LENGTH:
        problems["prefix"] = [f"is longer than {contract.NAME_MAX_LENGTH} characters"]
    if problems:
        return JsonResponse({"errors": problems}, status=400)
    values = SkillRun.objects.values_from(
        SUGGESTED_FIELDS[field], contract.clean_text(prefix), SUGGESTIONS
    )
    response = JsonResponse({"values": values})
    response["Cache-Control"] = "private, max-age=30"
    return response


# --- run detail ------------------------------------------------------------------------


# The run page's timeline, failures and live updates: runs/web/trace.py.
EVENTS_PAGE_SIZE = trace.EVENTS_PAGE_SIZE
# Run output up to this many characters is shown rendered as markdown (with the raw text
# a click away); longer output shows as text only.
OUTPUT_MARKDOWN_MAX_CHARS = 20_000


@dashboard_view
def run_detail(request, run_id):
    problems = parameter_problems(request.GET, trace.PAGE_PARAMS)
    if problems:
        return bad_request(request, problems)
    try:
        position = trace.parse_position(request.GET)
    except trace.BadParameters as exc:
        return bad_request(request, exc.problems)
    run = selectors.run_with_text_heads(run_id)
    if run is None:
        raise Http404("No run with that id.")
    inputs_pretty, inputs_raw = jsontext.pretty_text(run.inputs_text)
    chain = SkillRun.objects.parent_chain(run.id, summaries=True)
    children_qs = SkillRun.objects.children_of(run.id)
    children = list(children_qs.oldest_first().summaries()[: CHILDREN_SHOWN + 1])
    output_markdown = None
    size = run.output_size or 0
    if run.output_head and size <= min(OUTPUT_MARKDOWN_MAX_CHARS, selectors.TEXT_PAGE_CHARS):
        output_markdown = rendering.markdown_block(run.output_head)
    cost = pricing.run_costs([run])[run.id]

    context = {
        "run": run,
        "inputs_pretty": inputs_pretty,
        "inputs_raw": inputs_raw,
        "inputs_fold": presentation.is_long(inputs_pretty or inputs_raw),
        "output_cut": (run.output_size or 0) > selectors.TEXT_PAGE_CHARS,
        "error_cut": (run.error_size or 0) > selectors.TEXT_PAGE_CHARS,
        "output_fold": presentation.is_long(run.output_head),
        "error_fold": presentation.is_long(run.error_head),
        "output_markdown": output_markdown,
        "cost": cost,
        "cost_text": costs.display(cost),
        "cost_title": rendering.cost_title(cost),
        "chain": chain[:-1],
        "chain_is_cut": bool(chain) and chain[0].parent_run_id != "",
        "children": children[:CHILDREN_SHOWN],
        "more_children": len(children) > CHILDREN_SHOWN,
        "position": position,
        "stale_after_minutes": settings.SKILLAUDIT_STALE_AFTER_MINUTES,
        "is_stale": run.status == contract.STATUS_RUNNING
        and run.started_at < timezone.now() - stale_after(),
        **trace.page_context(run, position),
    }
    return render(request, "runs/run_detail.html", context)


@dashboard_view
def run_live(request, run_id):
    """JSON for a run page's script: status, figures and the events after ``after``."""
    run_id = contract.clean_id(run_id)
    run = SkillRun.objects.summaries().filter(pk=run_id).first()
    if run is None and SkillRun.objects.filter(pk=f"{run_id}/live").exists():
        # /runs/<x>/live/ is also the page of a run whose id is "<x>/live".
        return run_detail.__wrapped__(request, f"{run_id}/live")
    problems = parameter_problems(request.GET, trace.LIVE_PARAMS)
    if problems:
        return JsonResponse({"errors": problems}, status=400)
    try:
        after, append = trace.parse_live(request.GET)
    except trace.BadParameters as exc:
        return JsonResponse({"errors": exc.problems}, status=400)
    if run is None:
        return JsonResponse({"errors": {"run": ["no run with that id"]}}, status=404)
    response = JsonResponse(trace.live_state(run, after, append))
    response["Cache-Control"] = "no-store"
    return response


RAW_FIELDS = {"inputs", "output", "error"}


@dashboard_view
def run_raw(request, run_id, field):
    """One big field of a run, whole, as inert plain text or JSON."""
    if field not in RAW_FIELDS:
        raise Http404("no such field")
    if field == "inputs":
        row = get_object_or_404(
            SkillRun.objects.annotate(text=Cast("inputs", TextField())).values_list("text"),
            pk=contract.clean_id(run_id),
        )
        return _raw_response(row[0], "application/json")
    row = get_object_or_404(SkillRun.objects.values_list(field), pk=contract.clean_id(run_id))
    return _raw_response(row[0], "text/plain; charset=utf-8")


@dashboard_view
def event_raw(request, run_id, sequence):
    row = get_object_or_404(
        SkillRunLog.objects.annotate(text=Cast("payload", TextField())).values_list("text"),
        run_id=contract.clean_id(run_id),
        sequence=sequence,
    )
    return _raw_response(row[0], "application/json")


def _raw_response(text: str, content_type: str) -> HttpResponse:
    response = HttpResponse(text, content_type=content_type)
    # Shown as text, never rendered, even by a browser that sniffs.
    response["Content-Disposition"] = "inline"
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


# --- call tree -------------------------------------------------------------------------


@dashboard_view
def run_tree(request, run_id):
    problems = parameter_problems(request.GET, set())
    if problems:
        return bad_request(request, problems)
    run_id = contract.clean_id(run_id)
    run = SkillRun.objects.summaries().filter(pk=run_id).first()
    if run is None and SkillRun.objects.filter(pk=f"{run_id}/tree").exists():
        # /runs/<x>/tree/ is also the page of a run whose id is "<x>/tree".
        return run_detail.__wrapped__(request, f"{run_id}/tree")
    if run is None:
        raise Http404("No run with that id.")
    tree = selectors.call_tree(run.id)
    root = tree.root
    now = timezone.now()
    length = presentation.tree_length(tree.preorder(), root.run.started_at, now)
    nodes = presentation.flatten_tree(root, root.run.started_at, length, now=now)
    pricing.subtree_costs(nodes)
    context = {
        "run": run,
        "root": root.run,
        "nodes": nodes,
        "size": tree.size,
        "capped": tree.capped,
        "node_cap": selectors.TREE_NODE_CAP,
        "root_is_orphan": tree.root_is_orphan,
        "axis": rendering.axis(length, presentation.axis_ticks(length)),
        "tree_failed": sum(1 for n in nodes if presentation.run_failed(n.run)),
        "tree_cost": costs.display(root.subtree_cost),
        "tree_cost_title": rendering.cost_title(root.subtree_cost),
    }
    return render(request, "runs/run_tree.html", context)


# --- downloads (runs.services.export; the API serves the same bytes) ---------------------


DOWNLOAD_TYPES = {"jsonl": "application/x-ndjson; charset=utf-8", "csv": "text/csv; charset=utf-8"}


def _download(chunks, content_type: str, filename: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(chunks, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response


@dashboard_view
def runs_export(request):
    """The runs the list's filters select, as JSON Lines (events=1: with events) or CSV."""
    if "format" not in request.GET and SkillRun.objects.filter(pk="export").exists():
        # /runs/export/ is also the page of a run whose id is "export".
        return run_detail.__wrapped__(request, "export")
    filterset = RunFilterSet(
        request.GET, queryset=SkillRun.objects.all(), extra_params=("format", "events")
    )
    if not filterset.is_valid():
        return bad_request(request, filterset.error_messages)
    fmt, problems = request.GET.get("format", ""), {}
    if fmt not in DOWNLOAD_TYPES:
        problems["format"] = ["must be jsonl or csv"]
    try:
        events = parse_bool(request.GET.get("events"))
    except ValueError as exc:
        events, problems["events"] = False, [str(exc)]
    if events and fmt == "csv":
        problems["events"] = ["needs format=jsonl"]
    if problems:
        return bad_request(request, problems)
    if fmt == "csv":
        chunks = export.csv_chunks(filterset.qs)
    else:
        chunks = export.jsonl_chunks(filterset.qs, events)
    return _download(chunks, DOWNLOAD_TYPES[fmt], f"runs.{fmt}")


@dashboard_view
def run_export(request, run_id):
    """The run's whole call tree, every field and event, as one JSON document."""
    problems = parameter_problems(request.GET, set())
    if problems:
        return bad_request(request, problems)
    run_id = contract.clean_id(run_id)
    if (
        not SkillRun.objects.filter(pk=run_id).exists()
        and SkillRun.objects.filter(pk=f"{run_id}/export").exists()
    ):
        # /runs/<x>/export/ is also the page of a run whose id is "<x>/export".
        return run_detail.__wrapped__(request, f"{run_id}/export")
    try:
        plan = export.tree_export(run_id)
    except contract.NotFound:
        raise Http404("No run with that id.") from None
    except export.TreeTooLarge as exc:
        return bad_request(request, {"run": [str(exc)]})
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", plan.root_id)[:60].strip("._") or "x"
    return _download(plan.chunks(), "application/json", f"run-{safe}.json")


# --- skills ----------------------------------------------------------------------------


SKILL_SORTS = {
    "last_run": "last run, newest first",
    "name": "name",
    "failures": "last failure, newest first",
}
SKILLS_PAGE_SIZE = 100


@dashboard_view
def skill_overview(request):
    """A page of skills in a sort order: one range of the summary table's index for the
    page (SkillSummary, kept by triggers), then the page's skills' 24-hour and 7-day counts
    and sparklines from skill_run_counts. The cost is a page's, not the skills': under
    10 ms at 20,000 skills, against 2-5 s when every page read every skill (bench/RESULTS.md).
    """
    problems = parameter_problems(request.GET, {"sort", "page"})
    sort = request.GET.get("sort") or "last_run"
    if sort not in SKILL_SORTS:
        problems["sort"] = [f"must be one of {', '.join(SKILL_SORTS)}"]
    page = request.GET.get("page") or "1"
    if not page.isdigit() or len(page) > 6 or int(page) < 1:
        problems["page"] = ["must be a page number (1, 2, ...)"]
    if problems:
        return bad_request(request, problems)
    total = SkillSummary.objects.count()
    pages = max(1, -(-total // SKILLS_PAGE_SIZE))
    page = min(int(page), pages)
    summaries = SkillSummary.objects.page(sort, (page - 1) * SKILLS_PAGE_SIZE, SKILLS_PAGE_SIZE)
    now = timezone.now()
    skills = [_skill_row(summary, now) for summary in summaries]
    _add_recent_counts(skills, now)
    _add_sparklines(skills, now)
    _add_costs(skills, now)
    return render(
        request,
        "runs/skills.html",
        {
            "skills": skills,
            "skill_total": total,
            "quiet_days": settings.SKILLAUDIT_QUIET_AFTER_DAYS,
            "nav": "skills",
            "sort": sort,
            "sorts": SKILL_SORTS,
            "page": page,
            "pages": pages,
            "previous_page": page - 1 if page > 1 else None,
            "next_page": page + 1 if page < pages else None,
        },
    )


def _skill_row(summary: SkillSummary, now) -> dict:
    """What the page shows of one skill from its summary row (rendering.skill_rows)."""
    quiet_after = now - timedelta(days=settings.SKILLAUDIT_QUIET_AFTER_DAYS)
    return {
        "id": summary.skill_id,
        "runs": summary.runs,
        "last_run": summary.last_run_at,
        "last_ok": summary.last_ok_at,
        "last_failed": summary.last_failed_at,
        "never_succeeded": summary.last_ok_at is None,
        "quiet": summary.last_run_at is None or summary.last_run_at < quiet_after,
    }


def _add_recent_counts(skills: list[dict], now) -> None:
    """Each skill's runs by status in the last 24 hours and 7 days (the chips), counted
    from skill_run_counts for the page's skills only."""
    week, day = SkillRunCount.objects.by_skill_and_status(
        since=now - timedelta(days=7),
        recent_since=now - timedelta(days=1),
        skill_ids=[s["id"] for s in skills],
    )
    for skill in skills:
        skill["day"] = _status_counts(day.get(skill["id"], {}))
        skill["week"] = _status_counts(week.get(skill["id"], {}))
        skill["day_total"] = sum(day.get(skill["id"], {}).values())
        skill["week_total"] = sum(week.get(skill["id"], {}).values())


def _add_sparklines(skills: list[dict], now) -> None:
    """Each skill's last 7 UTC days (today included) from the day buckets, for the page's
    skills only: [(day, [(status, n), ...]), ...] oldest first."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = today - timedelta(days=6)
    buckets = SkillRunCount.objects.days_by_skill(first, [s["id"] for s in skills])
    for skill in skills:
        by_day = buckets.get(skill["id"], {})
        skill["days"] = [
            (
                f"{day:%a %d %b}",
                sorted(by_day.get(day, {}).items()),
            )
            for day in (first + timedelta(days=i) for i in range(7))
        ]


def _add_costs(skills: list[dict], now) -> None:
    """Each skill's cost over the sparklines' 7 UTC days (today included), from the
    trigger-kept usage buckets, for the page's skills only."""
    today = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    found = pricing.skill_costs(
        [s["id"] for s in skills], today - timedelta(days=6), today + timedelta(days=1)
    )
    for skill in skills:
        skill["cost"] = found.get(skill["id"])


def _status_counts(counts: dict[str, int]) -> list[tuple[str, int, bool]]:
    """(status, count, whether the list can filter by it): other writers' statuses can't."""
    return [(s, n, s in contract.KNOWN_STATUSES) for s, n in sorted(counts.items())]


# --- health ----------------------------------------------------------------------------


def healthz(request):
    """200 when the database answers, 503 when it does not (no login: for load balancers)."""
    try:
        SkillRun.objects.only("id")[:1].exists()
    except DatabaseError:
        return JsonResponse({"status": "unavailable", "database": "down"}, status=503)
    return JsonResponse({"status": "ok", "database": "up"})
