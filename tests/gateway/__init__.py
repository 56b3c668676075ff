"""Tests of modelladder.gateway."""
