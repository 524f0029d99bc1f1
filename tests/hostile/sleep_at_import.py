"""Sleeps forever while the file is imported."""
import time

while True:
    time.sleep(1)
