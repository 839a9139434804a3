"""The project's yaml configs, wherever segzoo is installed (as ``detectron2.model_zoo``).

A non-editable install ships them inside this package (``segzoo/model_zoo/configs``, copied at
build time); a source checkout (editable install) reads the repository's ``configs/``.

    from segzoo.model_zoo import get_config_file
    cfg = segzoo.config.load_config(get_config_file("RDSNet/shapes_R_18.yaml"))
"""
import os

from ..errors import UserError

__all__ = ["config_root", "get_config_file"]

_HERE = os.path.dirname(os.path.abspath(__file__))
_CANDIDATES = (
    os.path.join(_HERE, "configs"),  # installed
    os.path.join(os.path.dirname(os.path.dirname(_HERE)), "configs"),  # source checkout
)


def config_root() -> str:
    """The folder holding the configs (``<Paper>/<name>.yaml``)."""
    for root in _CANDIDATES:
        if os.path.isdir(root):
            return root
    raise UserError(f"segzoo's configs are missing (looked in {', '.join(_CANDIDATES)}); reinstall segzoo")


def get_config_file(config_path: str) -> str:
    """Absolute path of a config given relative to the configs folder, e.g.
    ``"BlendMask/shapes_R_18.yaml"`` (a leading ``configs/`` is accepted). An absolute path (a
    plugin's own config) is returned as it is."""
    if os.path.isabs(config_path):
        if not os.path.isfile(config_path):
            raise UserError(f"config file {config_path} does not exist")
        return config_path
    rel = config_path[len("configs/"):] if config_path.startswith("configs/") else config_path
    path = os.path.join(config_root(), rel)
    if not os.path.isfile(path):
        raise UserError(f"{config_path!r} is not one of segzoo's configs (under {config_root()})")
    return path
