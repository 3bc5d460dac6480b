"""serverlord: a self-hosted monitor for scheduled jobs."""

__version__ = "0.1.0"
