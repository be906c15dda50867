"""Template validation for coe=kubernetes (minimal; "kube-client" owns the full one)."""

from __future__ import annotations

from collections.abc import Mapping

from flotilla.errors import Invalid

from .labels import flannel_settings


def validate_template(fields: Mapping[str, object], *, built_version: str | None) -> None:
    if built_version is None:
        raise Invalid(
            "coe kubernetes is not available here: the Kubernetes binaries are not built on this machine; "
            "build them with scripts/build-kube.sh (part of `make setup`)."
        )
    driver = fields.get("network_driver")
    if driver not in (None, "flannel"):
        raise Invalid(
            f"network_driver {driver} is not supported for kubernetes clusters; supported: flannel."
        )
    if fields.get("volume_driver") not in (None, ""):
        raise Invalid(
            f"volume_driver {fields.get('volume_driver')} is not supported for kubernetes clusters on the "
            "local provider (no Cinder here)."
        )
    labels = fields.get("labels") or {}
    if isinstance(labels, Mapping):
        flannel_settings(labels)
        wanted = labels.get("kube_tag") or labels.get("kube_version")
        if wanted and str(wanted).lstrip("v") != built_version.lstrip("v"):
            raise Invalid(f"Kubernetes {wanted} is not available here; the built version is {built_version}.")
