"""URL converters shared by the dashboard and the API."""

from django.urls import register_converter


class RunIdConverter:
    """Any non-empty text: run ids are free text, and Django's <path:> cannot match an id
    with a newline in it. Routes with a suffix (/tree/, /logs/...) must come before the
    bare run route, so that the greedy match takes everything before the suffix."""

    regex = r"[\s\S]+"

    def to_python(self, value):
        return value

    def to_url(self, value):
        return value


register_converter(RunIdConverter, "runid")
