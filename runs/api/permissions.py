"""Who may call the JSON API: Django's model permissions, reads included.

A module of its own because the REST_FRAMEWORK setting names these classes and DRF loads
them while it defines APIView: a module that imports DRF's views cannot be named there.
"""

from __future__ import annotations

from rest_framework.permissions import BasePermission, DjangoModelPermissions

VIEW_RUNS = "runs.view_skillrun"


class RunModelPermissions(DjangoModelPermissions):
    """DjangoModelPermissions that also needs the view permission to read.

    Stock DjangoModelPermissions lets any logged-in user GET. Here every method needs its
    permission, anonymous requests get 401 (token authentication comes first) and users
    without the permission 403. A view can name the permissions of a method itself in
    ``required_permissions`` ({method: [perm, ...]}): the contract endpoints read with
    POST, and recording events needs the log permission on top of the run ones.
    """

    perms_map = {
        "GET": ["%(app_label)s.view_%(model_name)s"],
        "HEAD": ["%(app_label)s.view_%(model_name)s"],
        "OPTIONS": ["%(app_label)s.view_%(model_name)s"],
        "POST": ["%(app_label)s.add_%(model_name)s", "%(app_label)s.change_%(model_name)s"],
        "PUT": ["%(app_label)s.change_%(model_name)s"],
        "PATCH": ["%(app_label)s.change_%(model_name)s"],
        "DELETE": ["%(app_label)s.delete_%(model_name)s"],
    }

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        explicit = getattr(view, "required_permissions", {}).get(request.method)
        if explicit is not None:
            return user.has_perms(explicit)
        return super().has_permission(request, view)


class CanViewRuns(BasePermission):
    """Logged in with the permission to view runs (the OpenAPI document)."""

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and user.has_perm(VIEW_RUNS))
