"""Tests of modelladder.backends."""
