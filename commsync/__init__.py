"""commsync: a platform's customer communications as code."""

__version__ = "0.1.0"
