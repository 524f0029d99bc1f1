"""Changes the working directory at import (relative -o and paths must not follow)."""
import os

from _tiny import Tiny

model = Tiny()

os.chdir("/")
