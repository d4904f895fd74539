"""The dashboard: HTML views, their URLs, and the one module that renders hot HTML."""
