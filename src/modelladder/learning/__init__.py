"""Learning from traces: labels, the calibrated gate per step, retrieved examples, tool
selection, history compaction, the answer memo, the ex-ante skip.

Sits between :mod:`modelladder.traces` (what it reads) and :mod:`modelladder.ladder` (what it
feeds, through two seams: :class:`modelladder.ladder.gate.Gate` for the gate and
:class:`modelladder.ladder.shaping.Shaper` for what an edge rung sees). The ladder never
imports this package.
"""

from modelladder.learning.calibrate import Calibration, CalibrationError, calibrate_step
from modelladder.learning.edge_shaper import EdgeShaper
from modelladder.learning.example_index import Example, ExampleIndex, ExampleIndexError, Hit
from modelladder.learning.example_source import RebuildReport, examples_from_store, rebuild_from_store
from modelladder.learning.gate import StoreGate
from modelladder.learning.memo import MemoBackend
from modelladder.learning.skip import SkipCalibration, calibrate_skip

__all__ = [
    "Calibration",
    "CalibrationError",
    "EdgeShaper",
    "Example",
    "ExampleIndex",
    "ExampleIndexError",
    "Hit",
    "MemoBackend",
    "RebuildReport",
    "SkipCalibration",
    "StoreGate",
    "calibrate_skip",
    "calibrate_step",
    "examples_from_store",
    "rebuild_from_store",
]
