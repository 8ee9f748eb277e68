"""Run from outside the source tree against the wheel installed in a fresh venv (numpy only)."""
import intdistill
from intdistill import _core

print("wheel ok:", intdistill.__file__, _core.__file__, _core.__version__)
