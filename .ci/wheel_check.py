"""Run from outside the source tree against the wheel installed in a fresh venv (numpy only): the
extension loads and computes, with no source tree on the path."""
import intdistill
from intdistill import _core
from intdistill.metrics import evaluate

assert "site-packages" in intdistill.__file__, intdistill.__file__
res = evaluate({"q": {"a": 1, "b": 2}}, {"q": {"a": 0.9, "b": 0.5, "c": 0.1}}, ["nDCG@10", "RR@10"])
assert abs(res.mean["RR@10"] - 1.0) < 1e-12 and 0 < res.mean["nDCG@10"] < 1, res.mean
assert _core.normalize_answer("The  Cat!") == "cat"
print("wheel ok:", _core.__file__, res.mean)
