"""Stand-in for the RapidPro web app and its celery tasks (see app/README.md)."""
