"""The ``rlm-pipeline`` command line: the only place that prints."""
