"""Tests of modelladder.distill."""
