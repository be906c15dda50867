"""Provider instances for the conductor, built on first use. The default provider is
built and checked when the conductor starts (``check_default``: a configuration that
can only fail later is refused at start-up); others when a cluster first needs them."""

from __future__ import annotations

import threading
from pathlib import Path

from flotilla.drivers.base import Provider
from flotilla.drivers.registry import CoeRegistry, unmet_requirements
from flotilla.errors import FlotillaError, Unavailable
from flotilla.settings import Settings


class ProviderPool:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._providers: dict[str, Provider] = {}

    def get(self, name: str) -> Provider:
        """The provider ``name``; raises Unavailable with the reason if it cannot start."""
        with self._lock:
            if name not in self._providers:
                if name not in self.settings.enabled_providers:
                    raise Unavailable(
                        f"Provider {name} is not enabled here (enabled: {', '.join(self.settings.enabled_providers)})."
                    )
                self._providers[name] = self._build(name)
            return self._providers[name]

    def _build(self, name: str) -> Provider:
        if name == "local":
            from flotilla.drivers.providers.local import LocalProvider
            from flotilla.drivers.providers.local.engine import Engine

            engine = Engine.connect(self.settings.local.docker_host, Path(self.settings.data_dir))
            return LocalProvider(engine, subnet_pool=self.settings.local.subnet_pool)
        if name == "fake":
            from flotilla.drivers.providers.fake import FakeProvider

            return FakeProvider()
        from flotilla.drivers.registry import load_provider_factories

        return load_provider_factories([name])[name]()

    def max_volume_gb(self, name: str) -> int | None:
        """What provider ``name`` says a new node volume may have (``Provider.max_volume_gb``).

        The local provider is asked without starting its engine (the API process asks this
        for every template and cluster with a ``docker_volume_size``).
        """
        with self._lock:
            provider = self._providers.get(name)
        if provider is not None:
            return provider.max_volume_gb()
        if name == "local":
            docker_host = self.settings.local.docker_host
            if docker_host and not docker_host.startswith("unix://"):
                return None  # volumes cannot be sized on a remote engine
            from flotilla.drivers.providers.local import LocalProvider

            return LocalProvider.free_volume_gb(Path(self.settings.data_dir))
        return self.get(name).max_volume_gb()

    def revive_engines(self) -> list[str]:
        """Restart (owned) or reconnect the local provider's Docker Engine if it stopped
        answering. Returns the names of the providers whose engine was revived; raises
        Unavailable when an engine cannot be revived (the next call tries again)."""
        local = self.loaded().get("local")
        engine = getattr(local, "engine", None)
        if engine is None or not engine.revive():
            return []
        return ["local"]

    def check_default(self, coes: CoeRegistry) -> Provider:
        """Start-up check of the provider new clusters use: it builds, its ``check()`` passes,
        and it has every capability each enabled COE driver requires (the pairs that can be
        used). Raises ``Unavailable`` naming what is wrong."""
        name = self.settings.default_provider
        try:
            provider = self.get(name)
            provider.check()
        except FlotillaError as exc:
            raise Unavailable(f"Provider {name} (default_provider) is not usable: {exc.message}") from exc
        missing = unmet_requirements(coes.drivers(), provider)
        if missing:
            raise Unavailable("; ".join(missing))
        return provider

    def loaded(self) -> dict[str, Provider]:
        with self._lock:
            return dict(self._providers)
