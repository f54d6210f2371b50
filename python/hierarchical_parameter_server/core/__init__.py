"""Implementation modules of hierarchical_parameter_server."""
