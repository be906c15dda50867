"""The ``kubernetes`` COE driver (see :mod:`.driver`)."""

from .driver import KubernetesCoe

__all__ = ["KubernetesCoe"]
