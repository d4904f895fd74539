"""The dashboard's template tags and filters; the work is done in runs/web/rendering.py."""

from django import template

from .. import rendering

register = template.Library()

register.simple_tag(rendering.when, name="when")
register.simple_tag(rendering.badge, name="badge")
register.simple_tag(rendering.run_rows, name="run_rows")
register.simple_tag(rendering.tree_items, name="tree_items")
register.simple_tag(rendering.timeline_items, name="timeline_items")
register.simple_tag(rendering.skill_rows, name="skill_rows")
register.simple_tag(rendering.options, name="options")
register.simple_tag(rendering.run_filters, name="run_filters")
register.simple_tag(rendering.run_url, name="run_url")
# {% route 'runs:run_list' %}: {% url %} with the path kept per process (rendering.route).
register.simple_tag(rendering.route, name="route")
for _filter in (
    rendering.seconds,
    rendering.count,
    rendering.size,
    rendering.status_class,
    rendering.admin_pk,
):
    register.filter(_filter.__name__, _filter)
