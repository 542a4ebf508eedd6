"""mobility: privacy-preserving migration statistics from call-detail and payment records."""

__version__ = "0.1.0"
