"""Reminders: by hand and by rule, delivered exactly once by Celery beat and workers."""
