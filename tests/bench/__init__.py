"""Tests of modelladder.bench."""
