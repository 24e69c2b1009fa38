"""Referrals: consent-gated referrals of a client to a resource, and the partner inbox."""
