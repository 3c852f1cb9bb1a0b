"""Helpers that build broken, extreme and hostile test inputs from real media in ../shared."""
