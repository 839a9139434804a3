import sys

import segzoo  # noqa: F401  (first: makes Detectron2 importable without its compiled ops)
from segzoo.export.cli import main

sys.exit(main())
