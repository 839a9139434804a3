"""``python -m segzoo.zoo``: the comparison of every installed method on one harness."""
import sys

from .cli import main_compare

sys.exit(main_compare())
