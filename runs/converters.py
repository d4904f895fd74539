"""URL converters shared by the dashboard and the API."""

from django.urls import register_converter

from . import contract


class RunIdConverter:
    """Any non-empty text: run ids are free text, and Django's <path:> cannot match an id
    with a newline in it. Routes with a suffix (/tree/, /logs/...) must come before the
    bare run route, so that the greedy match takes everything before the suffix."""

    regex = r"[\s\S]+"

    def to_python(self, value):
        # "~." names the run ".": a bare "." or ".." segment never reaches the server intact.
        return contract.run_id_from_segment(value)

    def to_url(self, value):
        return contract.escape_dot_id(value)


register_converter(RunIdConverter, "runid")
