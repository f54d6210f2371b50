"""Version of the hierarchical_parameter_server package (read by setuptools without importing)."""

__version__ = "25.1.0"
