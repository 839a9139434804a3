"""Plugins: packages that declare themselves to segzoo with one entry point.

A plugin is any installed distribution with an entry point in the ``segzoo.plugins`` group that
names a :class:`Plugin` (one line in its ``pyproject.toml``)::

    [project.entry-points."segzoo.plugins"]
    mymethod = "mymethod:PLUGIN"

Loading the entry point imports the package, which registers its meta-architectures, heads and
evaluators in Detectron2's registries; the :class:`Plugin` gives its config function and its
entries for the comparison harness. The library itself names no plugin.
"""
import importlib.metadata
import sys
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Sequence

from .errors import UserError

__all__ = ["ENTRY_POINT_GROUP", "Plugin", "add_plugin_configs", "class_agnostic_architectures", "import_plugins",
           "plugin_entry_points"]

ENTRY_POINT_GROUP = "segzoo.plugins"


@dataclass(frozen=True)
class Plugin:
    """What a plugin declares. ``add_config(cfg)`` adds its config keys (None: it has none);
    ``meta_architectures`` are the ``MODEL.META_ARCHITECTURE`` names it registers; ``methods``
    are its entries of the comparison harness (:class:`segzoo.zoo.Method`);
    ``class_agnostic`` are those of its meta-architectures whose outputs are class-agnostic
    (segment proposals: drawn as one class by the demo); ``detection_caps`` maps each of its
    meta-architectures to ``fn(cfg, n) -> KEY VALUE overrides`` raising the config's caps (detections,
    proposals, candidates per level) so that up to n instances per image are kept
    (:mod:`segzoo.caps`: they follow the data)."""

    name: str
    add_config: Optional[Callable] = None
    meta_architectures: Sequence[str] = ()
    methods: Sequence = field(default_factory=tuple)
    class_agnostic: Sequence[str] = ()
    detection_caps: Dict[str, Callable] = field(default_factory=dict)


_LOADED: Dict[str, Plugin] = {}


def plugin_entry_points():
    """The installed ``segzoo.plugins`` entry points, one per name (the first on ``sys.path``)."""
    if sys.version_info >= (3, 10):
        eps = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    else:  # pragma: no cover  (3.9: a dict of groups)
        eps = importlib.metadata.entry_points().get(ENTRY_POINT_GROUP, [])
    unique = {}
    for ep in eps:
        unique.setdefault(ep.name, ep)
    return list(unique.values())


def _load(ep) -> Plugin:
    try:
        plugin = ep.load()
    except Exception as e:
        raise UserError(f"plugin {ep.name!r} ({ep.value}) failed to import: {type(e).__name__}: {e}") from e
    if not isinstance(plugin, Plugin):
        raise UserError(f"plugin entry point {ep.name!r} ({ep.value}) must name a segzoo.plugins.Plugin, "
                        f"got {type(plugin).__name__}")
    return plugin


def import_plugins() -> Dict[str, Plugin]:
    """Import every installed plugin (registers its modules); name -> :class:`Plugin`."""
    for ep in plugin_entry_points():
        if ep.name not in _LOADED:
            _LOADED[ep.name] = _load(ep)
    return dict(_LOADED)


def add_plugin_configs(cfg) -> None:
    """Add every installed plugin's config keys to ``cfg``."""
    for plugin in import_plugins().values():
        if plugin.add_config is not None:
            plugin.add_config(cfg)


def class_agnostic_architectures() -> set:
    """The meta-architectures every installed plugin declares class-agnostic."""
    return {a for plugin in import_plugins().values() for a in plugin.class_agnostic}
