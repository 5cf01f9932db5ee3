"""Helpers for the tests (never imported by one test module from another)."""
