"""Dagster definitions, one folder per concern; each factory takes a brand and returns dg.Definitions."""
