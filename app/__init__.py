"""advocase: case management for advocates who help people leave abusive relationships."""

__version__ = "0.1.0"
