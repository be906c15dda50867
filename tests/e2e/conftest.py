"""e2e tests use the session engine fixtures of tests/engine_fixtures.py (via tests/conftest.py)."""
