"""Replaces sys.stdout at import and closes the old one."""
import io
import sys

from _tiny import Tiny

model = Tiny()

sys.stdout.close()
sys.stdout = io.StringIO()
