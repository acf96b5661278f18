"""Model card templates (package data; see README.md)."""
