"""Safety plans: a client's versioned, encrypted safety plan, and what changed between versions."""
