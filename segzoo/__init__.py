"""segzoo: shared code of the instance-segmentation plugins (ops, data, evaluation).

Importing it makes Detectron2 usable when it was built without its compiled ops
(see :mod:`segzoo._compat`) and registers the synthetic ``shapes_*`` datasets.
"""
from ._compat import detectron2_has_ops, ensure_detectron2_ops

ensure_detectron2_ops()

from . import ops  # noqa: E402
from . import data  # noqa: E402  (registers datasets)
from . import modeling  # noqa: E402  (registers backbones)

__version__ = "0.1.0"
__all__ = ["ops", "data", "modeling", "detectron2_has_ops", "ensure_detectron2_ops"]
