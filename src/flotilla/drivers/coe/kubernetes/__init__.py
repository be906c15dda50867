"""The ``kubernetes`` COE (the user guide's main one).

The driver class is in ``driver.py``; template validation in ``template.py``,
labels/constants and the built version in ``labels.py``, the client configuration (a
kubeconfig) in ``client.py``, node bootstrap in ``bootstrap.py`` + ``node.sh``, the
operations' steps in ``steps.py``, health in ``health.py``.
"""

from flotilla.drivers.coe.kubernetes.driver import IMAGE_LOAD_ARGV, KubernetesCoe

__all__ = ["IMAGE_LOAD_ARGV", "KubernetesCoe"]
