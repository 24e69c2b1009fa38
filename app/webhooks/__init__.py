"""Signed webhooks: partner apps register endpoints and receive referral events."""
