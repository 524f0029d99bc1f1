"""The measured run: ``archlint profile model.py --seq-len 512,1024,2048``.

Real steps on CPU (CUDA when present) next to the fake-tensor prediction of the same
step; see :mod:`.measure` for what is measured and :mod:`.command` for the run.
"""

from archlint.profile.command import format_profile, run_profile
from archlint.profile.measure import Measurement, measure_step
from archlint.profile.report import ProfileReport, ProfileRow

__all__ = ["run_profile", "format_profile", "measure_step", "Measurement", "ProfileReport",
           "ProfileRow"]
