"""Protective orders and court dates: the legal side of a client's case."""
