"""Tests of modelladder.traces."""
