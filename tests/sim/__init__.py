"""Tests of rlm_pipeline.sim."""
