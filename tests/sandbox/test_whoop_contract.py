"""WHOOP contract tests (PROVIDERS.md §7, ``payloads/whoop_*.json``): what the sandbox
answers and sends has the examples' keys, nesting and JSON value types; what the token
endpoint accepts includes the documented refresh request."""

from __future__ import annotations

from typing import Any

import pytest
from provider_sandbox.core import Sandbox

from tests.sandbox.conftest import Client
from tests.sandbox.test_whoop_oauth import (
    API,
    CLIENT_ID,
    SECRET,
    TOKEN,
    assert_shape,
    bearer,
    configure,
    connect,
    generate,
    issue_token,
    payload,
    user_id,
)
from tests.sandbox.test_whoop_webhooks import Receiver, start_receiver

pytestmark = pytest.mark.service

# Fields WHOOP documents as present only sometimes: the open cycle's end, distance and
# altitude for sports that record them, spo2 and skin temperature before WHOOP 4.0.
SOMETIMES = frozenset({"end", "distance_meter", "altitude_gain_meter", "altitude_change_meter"})


async def first_page(client: Client, sandbox: Sandbox, kind: str, path: str) -> dict[str, Any]:
    await configure(client, unscorable_rate=0.0)
    user = user_id(sandbox, "contract")
    await generate(client, user, kind, 3)
    token = (await issue_token(client, user))["access_token"]
    resp = await client.get(API + path, headers=bearer(token), params={"limit": "2"})
    assert resp.status == 200
    body: dict[str, Any] = await resp.json()
    assert len(body["records"]) == 2
    return body


async def test_cycle_collection_matches_example(client: Client, sandbox: Sandbox) -> None:
    body = await first_page(client, sandbox, "cycle", "/v2/cycle")
    assert_shape(body, payload("whoop_cycle.json"), optional=frozenset({"end"}))
    assert "end" in body["records"][1]


async def test_recovery_collection_matches_example(client: Client, sandbox: Sandbox) -> None:
    body = await first_page(client, sandbox, "recovery", "/v2/recovery")
    assert_shape(body, payload("whoop_recovery.json"))


async def test_sleep_collection_matches_example(client: Client, sandbox: Sandbox) -> None:
    body = await first_page(client, sandbox, "sleep", "/v2/activity/sleep")
    assert_shape(body, payload("whoop_sleep.json"))


async def test_workout_collection_matches_example(client: Client, sandbox: Sandbox) -> None:
    await configure(client, unscorable_rate=0.0)
    user = user_id(sandbox, "runner")
    resp = await client.post(
        f"/_sandbox/whoop/users/{user}/workout",
        json={"records": [{"sport_name": "running", "score_state": "SCORED"}] * 2},
    )
    assert resp.status == 201
    token = (await issue_token(client, user))["access_token"]
    listed = await client.get(
        API + "/v2/activity/workout", headers=bearer(token), params={"limit": "1"}
    )
    body = await listed.json()
    assert_shape(body, payload("whoop_workout.json"))
    # Sports without distance omit those fields, as WHOOP documents.
    others = await generate(client, user, "workout", 20)
    for workout in others:
        assert_shape(workout, payload("whoop_workout.json")["records"][0], optional=SOMETIMES)


async def test_single_record_reads_match_the_examples(client: Client, sandbox: Sandbox) -> None:
    await configure(client, unscorable_rate=0.0)
    user = user_id(sandbox, "single")
    recovery = (await generate(client, user, "recovery", 2))[1]
    token = (await issue_token(client, user))["access_token"]
    reads = {
        f"/v2/cycle/{recovery['cycle_id']}": "whoop_cycle.json",
        f"/v2/cycle/{recovery['cycle_id']}/sleep": "whoop_sleep.json",
        f"/v2/cycle/{recovery['cycle_id']}/recovery": "whoop_recovery.json",
        f"/v2/activity/sleep/{recovery['sleep_id']}": "whoop_sleep.json",
    }
    for path, example in reads.items():
        resp = await client.get(API + path, headers=bearer(token))
        assert resp.status == 200, path
        assert_shape(await resp.json(), payload(example)["records"][0])


async def test_token_endpoint_accepts_the_documented_refresh_request(client: Client) -> None:
    example = payload("whoop_token_refresh_request.json")
    first = await connect(client)
    filled = {
        **example,
        "refresh_token": first["refresh_token"],
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }
    assert set(filled) == set(example)
    as_json = await client.post(TOKEN, json=filled)
    assert as_json.status == 200, await as_json.text()
    second = await as_json.json()
    assert_shape(second, payload("whoop_token_refresh_response.json"))
    assert second["token_type"] == "bearer"
    assert "offline" in second["scope"].split()
    as_form = await client.post(TOKEN, data={**filled, "refresh_token": second["refresh_token"]})
    assert as_form.status == 200
    assert_shape(await as_form.json(), payload("whoop_token_refresh_response.json"))


async def test_webhook_body_matches_example(client: Client, sandbox: Sandbox) -> None:
    receiver: Receiver
    receiver, server = await start_receiver()
    try:
        await client.put("/_sandbox/whoop/webhook", json={"url": receiver.url})
        await connect(client, "hooked")
        await generate(client, user_id(sandbox, "hooked"), "sleep", 1)
        await receiver.wait_for(1)
        example = payload("whoop_webhook.json")
        assert_shape(receiver.events[0], example)
        assert receiver.events[0]["type"] == example["type"]
    finally:
        await server.close()
