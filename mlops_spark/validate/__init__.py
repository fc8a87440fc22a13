"""Validation: expectation suites (Great Expectations 1.x), row rules, silver and quarantine."""
