"""Registering into a registry another package owns (mmdet's) without taking its names.

mmengine's ``register_module(force=True)`` replaces whatever holds a name; a plugin that does so
silently changes what ``type='X'`` builds for every other user of the registry. :func:`register_own`
registers a class only under a free name, accepts its own earlier registration, and otherwise leaves
the existing entry in place and warns (the class can still be built with ``type=<the class>``).
"""
from __future__ import annotations

import warnings
from typing import Optional

__all__ = ['register_own', 'RegistryNameTaken']


class RegistryNameTaken(UserWarning):
    """A declip_mm class was not registered because its name belongs to another module."""


def register_own(registry, cls: type, name: Optional[str] = None) -> bool:
    """Register ``cls`` in ``registry`` under ``name`` (default: its class name) if it is free.

    Returns:
        bool: True when ``registry`` now maps ``name`` to ``cls`` (newly or already); False when the
        name belongs to another class, which keeps it (a :class:`RegistryNameTaken` warning names
        both).
    """
    name = name or cls.__name__
    owner = registry.module_dict.get(name)
    if owner is cls:
        return True
    if owner is not None:
        warnings.warn(
            f'{registry.name!r} registry of {registry.scope!r}: the name {name!r} already belongs to '
            f'{owner.__module__}.{owner.__qualname__}; declip_mm leaves it there and does not '
            f'register {cls.__module__}.{cls.__qualname__} under it (configs can still build '
            f'it with type={cls.__module__}.{cls.__qualname__})', RegistryNameTaken, stacklevel=2)
        return False
    registry.register_module(name=name, module=cls)
    return True
