"""A client's timeline: incidents, court dates, protective orders, risk assessments and
safety-plan versions in time order."""
