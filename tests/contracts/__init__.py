"""Tests of modelladder.contracts."""
