"""os._exit(0) while the file is imported: no Python handler runs."""
import os

os._exit(0)
