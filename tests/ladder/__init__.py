"""Tests of modelladder.ladder."""
