"""The service registry: instances per service, from settings or the simulator; selection."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

import pytest

from application.engine.registry import SIMULATED_SERVICES, ServiceRegistry, UnknownService
from application.errors import ConfigurationError
from application.settings import Settings

INVENTORY = ["http://inv-1:9000/inventory-service", "http://inv-2:9000/inventory-service"]


class TestInstances:
    def test_the_simulated_registry_has_every_service_on_the_simulator(self) -> None:
        registry = ServiceRegistry.simulated("http://127.0.0.1:8100/")
        assert registry.services == SIMULATED_SERVICES
        assert registry.instances("robotics-service") == [
            "http://127.0.0.1:8100/robotics-service"]

    def test_configured_services_come_from_wes_services(self) -> None:
        settings = Settings.from_env({
            "WES_SERVICES": '{"inventory-service": ["http://inv-1:9000/inventory-service/", '
                            '"http://inv-2:9000/inventory-service"]}'})
        registry = ServiceRegistry.from_settings(settings, "http://127.0.0.1:8100")
        assert registry.instances("inventory-service") == INVENTORY
        assert registry.services == ("inventory-service",)

    def test_without_wes_services_the_simulator_is_used(self) -> None:
        registry = ServiceRegistry.from_settings(Settings(), "http://127.0.0.1:8100")
        assert registry.to_dict() == ServiceRegistry.simulated("http://127.0.0.1:8100").to_dict()

    def test_without_wes_services_or_simulator_it_says_what_is_missing(self) -> None:
        with pytest.raises(ConfigurationError, match="WES_SERVICES"):
            ServiceRegistry.from_settings(Settings())

    def test_an_unknown_service_is_a_clear_error(self) -> None:
        registry = ServiceRegistry({"inventory-service": INVENTORY})
        with pytest.raises(UnknownService, match=r"billing-service.*inventory-service"):
            registry.instances("billing-service")
        with pytest.raises(LookupError):
            registry.select("billing-service")

    @pytest.mark.parametrize("urls", [[], "http://inv-1:9000/inventory-service"])
    def test_a_service_needs_a_list_of_urls(self, urls: list[str] | str) -> None:
        with pytest.raises(ConfigurationError, match="inventory-service"):
            ServiceRegistry({"inventory-service": urls})

    def test_instances_cannot_be_changed_through_the_returned_list(self) -> None:
        registry = ServiceRegistry({"inventory-service": INVENTORY})
        registry.instances("inventory-service").clear()
        assert registry.instances("inventory-service") == INVENTORY


class TestSelection:
    def test_round_robin_by_default(self) -> None:
        registry = ServiceRegistry({"inventory-service": INVENTORY,
                                    "robotics-service": ["http://rob:9000/robotics-service"]})
        picks = [registry.select("inventory-service") for _ in range(4)]
        assert picks == INVENTORY * 2
        assert registry.select("robotics-service") == "http://rob:9000/robotics-service"

    def test_round_robin_shares_evenly_across_threads(self) -> None:
        registry = ServiceRegistry({"inventory-service": INVENTORY})
        picks: list[str] = []
        lock = threading.Lock()

        def pick_many() -> None:
            mine = [registry.select("inventory-service") for _ in range(500)]
            with lock:
                picks.extend(mine)

        threads = [threading.Thread(target=pick_many) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert Counter(picks) == {INVENTORY[0]: 1000, INVENTORY[1]: 1000}

    def test_a_selector_decides_among_the_instances(self) -> None:
        seen: list[tuple[str, tuple[str, ...]]] = []

        def last(service: str, instances: Sequence[str]) -> str:
            seen.append((service, tuple(instances)))
            return instances[-1]

        registry = ServiceRegistry({"inventory-service": INVENTORY}, selector=last)
        assert registry.select("inventory-service") == INVENTORY[1]
        assert seen == [("inventory-service", tuple(INVENTORY))]

        registry.use_selector(lambda service, instances: instances[0])
        assert registry.select("inventory-service") == INVENTORY[0]
