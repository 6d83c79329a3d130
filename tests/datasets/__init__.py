"""Tests of rlm_pipeline.datasets."""
