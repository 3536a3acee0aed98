"""An Azure Storage failure is one clear line naming the store, the status and Storage's code (real Azurite)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient

from shared.errors import UpstreamError
from shared.inventory import InventoryStore
from shared.plan import KnownCluster
from shared.state import storage_error

pytestmark = pytest.mark.sandbox

AKS = "/subscriptions/s1/resourceGroups/rg-prod/providers/Microsoft.ContainerService/managedClusters/aks-prod"


def _missing_table(azurite: Any) -> TableClient:
    return TableClient.from_connection_string(
        azurite.connection_string, table_name=f"missing{uuid.uuid4().hex[:16]}", retry_total=0
    )


def test_an_inventory_storage_failure_names_the_store_the_status_and_the_storage_code(azurite: Any) -> None:
    with pytest.raises(UpstreamError) as caught:
        InventoryStore(_missing_table(azurite)).save(KnownCluster(id=AKS))
    assert str(caught.value) == "inventory storage: saving the inventory failed (HTTP 404, TableNotFound)"
    assert (caught.value.status, caught.value.code) == (404, "TableNotFound")


def test_a_state_storage_failure_carries_storage_s_wire_error_code(azurite: Any) -> None:
    with pytest.raises(ResourceNotFoundError) as raised:
        _missing_table(azurite).get_entity("p", "r")
    error = storage_error("reading a finding", raised.value)
    assert str(error) == "state storage: reading a finding failed (HTTP 404, TableNotFound)"
    assert (error.status, error.code) == (404, "TableNotFound")
