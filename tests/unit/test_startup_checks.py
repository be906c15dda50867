"""Start-up refuses a configuration that can only fail later: a default provider that is
not enabled, a COE driver that needs what the default provider lacks, a provider whose
backend does not answer."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flotilla.conductor.providers import ProviderPool
from flotilla.conductor.service import Conductor
from flotilla.db.engine import Database
from flotilla.drivers.base import CAP_EXEC
from flotilla.drivers.providers.fake import CAPABILITIES, FakeProvider
from flotilla.errors import Unavailable
from flotilla.services import bootstrap
from flotilla.settings import ConductorSettings, Settings


def test_default_provider_must_be_enabled(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="default_provider local is not enabled"):
        Settings(data_dir=tmp_path, enabled_providers=["fake"], default_provider="local")


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path, enabled_providers=["fake"], default_provider="fake",
        conductor=ConductorSettings(enabled=True),
    )  # fmt: skip


def _conductor(tmp_path: Path, provider: FakeProvider) -> Conductor:
    settings = _settings(tmp_path)
    db = Database(settings)
    bootstrap.prepare_database(db)
    pool = ProviderPool(settings)
    pool._providers["fake"] = provider
    return Conductor(settings, db, providers=pool)


def test_capabilities_must_cover_what_the_coe_drivers_require(tmp_path: Path) -> None:
    conductor = _conductor(tmp_path, FakeProvider(capabilities=CAPABILITIES - {CAP_EXEC}))
    with pytest.raises(Unavailable, match=r"swarm_mode.*requires exec.*provider fake"):
        conductor.start()
    assert not conductor._threads
    conductor.db.dispose()


def test_provider_check_runs_at_start_up(tmp_path: Path) -> None:
    conductor = _conductor(tmp_path, FakeProvider(fail_on={"check": "backend down"}))
    with pytest.raises(Unavailable, match="backend down"):
        conductor.start()
    assert not conductor._threads
    conductor.db.dispose()


def test_a_fitting_pair_starts(tmp_path: Path) -> None:
    conductor = _conductor(tmp_path, FakeProvider())
    conductor.start()
    assert conductor._threads
    conductor.stop()
    conductor.db.dispose()
