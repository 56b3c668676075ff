"""Learning from traces: labels, the calibrated gate per step, drift.

Sits between :mod:`modelladder.traces` (what it reads) and :mod:`modelladder.ladder` (what it
feeds, through the one seam :class:`modelladder.ladder.gate.Gate`). The ladder never imports
this package.
"""

from modelladder.learning.calibrate import Calibration, CalibrationError, calibrate_step
from modelladder.learning.gate import StoreGate

__all__ = ["Calibration", "CalibrationError", "StoreGate", "calibrate_step"]
