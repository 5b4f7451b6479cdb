"""tillhook: a webhook delivery daemon for point-of-sale servers."""

__version__ = "0.1.0"
