"""The JSON API (Django REST framework): views, serializers, permissions, routes."""
