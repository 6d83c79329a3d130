"""Tests of rlm_pipeline.llm."""
