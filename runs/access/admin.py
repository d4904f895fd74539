"""The admin's API tokens: made on the add page (the key shown there once), listed by prefix."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.template.response import TemplateResponse

from .models import ApiToken

User = get_user_model()


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("user", "key_prefix", "created")
    list_display_links = ("user",)
    fields = ("user",)
    readonly_fields = ()
    search_fields = (f"user__{User.USERNAME_FIELD}",)
    search_help_text = "A user name."
    ordering = ("-created",)
    raw_id_fields = ()
    list_filter = ()
    sortable_by = ("created",)

    def lookup_allowed(self, lookup, value, request=None):
        return False  # the page offers no filter: no lookup from the query string

    @admin.display(description="key")
    def key_prefix(self, token):
        return f"{token.prefix}…"

    def get_readonly_fields(self, request, obj=None):
        # A token is never edited: delete it and add a new one to rotate.
        return ("user", "key_prefix", "created") if obj else ()

    def get_fields(self, request, obj=None):
        return ("user", "key_prefix", "created") if obj else ("user",)

    def get_object(self, request, object_id, from_field=None):
        if "\x00" in object_id:
            return None
        return super().get_object(request, object_id, from_field)

    def save_model(self, request, obj, form, change):
        if change:
            return
        made = ApiToken.objects.create(user=form.cleaned_data["user"])
        obj.pk, obj.prefix, obj.created, obj.key = made.pk, made.prefix, made.created, made.key

    def response_add(self, request, obj, post_url_continue=None):
        # The key exists in clear only in this response: shown here, never stored.
        context = {
            **self.admin_site.each_context(request),
            "title": "API token created",
            "opts": self.opts,
            "token": obj,
            "key": obj.key,
        }
        response = TemplateResponse(request, "access/token_created.html", context)
        response["Cache-Control"] = "no-store"
        return response
