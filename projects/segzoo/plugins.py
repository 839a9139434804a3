"""The plugin packages of this project: imported to register their modules, and asked for
their config keys. A plugin that is not installed is skipped."""
import importlib

__all__ = ["PLUGINS", "import_plugins", "add_plugin_configs"]

# package -> name of its add_<name>_config(cfg) function (None: no config keys of its own)
PLUGINS = {
    "maskrcnn_roialign": None,
    "blendmask": "add_blendmask_config",
    "rdsnet": "add_rdsnet_config",
    "sharpmask": "add_sharpmask_config",
}


def _import(name):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name:
            return None
        raise


def import_plugins():
    """Import every installed plugin (registers its meta-architectures, heads, evaluators)."""
    return {name: mod for name in PLUGINS if (mod := _import(name)) is not None}


def add_plugin_configs(cfg):
    for name, fn in PLUGINS.items():
        if fn is None:
            continue
        mod = _import(name)
        if mod is not None:
            getattr(mod, fn)(cfg)
