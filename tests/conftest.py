import os
import sys

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
# The launcher is a separate interpreter: let it import tests/workers.py too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (TESTS_DIR, os.environ.get("PYTHONPATH")) if p)
sys.path.insert(0, TESTS_DIR)
