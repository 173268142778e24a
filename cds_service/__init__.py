"""CDS Hooks service for mid-back and low back musculoskeletal pain."""

__version__ = "0.1.0"
