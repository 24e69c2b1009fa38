"""Incidents: recorded factually, corrected by new revisions, never overwritten."""
