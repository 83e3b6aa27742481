"""taskhook: dependable glue for the Unified Tasks API."""

__version__ = "0.1.0"
