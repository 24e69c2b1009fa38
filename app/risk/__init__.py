"""Risk assessment: data-defined instruments (app.risk.instruments), scoring and results."""
