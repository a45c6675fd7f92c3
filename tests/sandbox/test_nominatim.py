"""Nominatim reverse geocoding in the sandbox: the result shape per format, zoom levels,
the usage policy (identification, 1 request/s per client) and the error answers."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import ClientResponse
from provider_sandbox.core import Sandbox

from tests.sandbox.conftest import Client

pytestmark = pytest.mark.service

UA = "syncplane-tests/1.0 (ops@example.com)"
REVERSE = "/nominatim/reverse"
JSONV2_KEYS = [
    "place_id",
    "licence",
    "osm_type",
    "osm_id",
    "lat",
    "lon",
    "category",
    "type",
    "place_rank",
    "importance",
    "addresstype",
    "name",
    "display_name",
    "address",
    "boundingbox",
]


async def reverse(
    client: Client, sandbox: Sandbox, *, ua: str | None = UA, **params: Any
) -> ClientResponse:
    """One request a virtual second apart, so the 1 req/s policy never interferes."""
    sandbox.clock.advance(1.0)
    query = {k: str(v) for k, v in params.items()}
    if ua is None:
        return await client.get(REVERSE, params=query, skip_auto_headers=["User-Agent"])
    return await client.get(REVERSE, params=query, headers={"User-Agent": ua})


async def test_known_city_jsonv2(client: Client, sandbox: Sandbox) -> None:
    resp = await reverse(client, sandbox, lat=52.5205, lon=13.4095, format="jsonv2")
    assert resp.status == 200
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert list(body) == JSONV2_KEYS
    assert isinstance(body["place_id"], int)
    assert isinstance(body["osm_id"], int)
    assert isinstance(body["lat"], str)
    assert isinstance(body["lon"], str)
    assert abs(float(body["lat"]) - 52.5205) < 0.001
    assert isinstance(body["place_rank"], int)
    assert isinstance(body["importance"], float)
    assert body["licence"].startswith("Data © OpenStreetMap contributors")
    address = body["address"]
    assert address["city"] == "Berlin"
    assert address["country"] == "Deutschland"
    assert address["country_code"] == "de"
    assert address["ISO3166-2-lvl4"] == "DE-BE"
    assert "road" in address
    assert "postcode" in address
    assert body["display_name"].endswith("Berlin, 10117, Deutschland")
    assert len(body["boundingbox"]) == 4
    assert all(isinstance(v, str) for v in body["boundingbox"])
    minlat, maxlat, minlon, maxlon = map(float, body["boundingbox"])
    assert minlat <= float(body["lat"]) <= maxlat
    assert minlon <= float(body["lon"]) <= maxlon


async def test_json_format_uses_class_and_english_names_on_request(
    client: Client, sandbox: Sandbox
) -> None:
    resp = await reverse(
        client, sandbox, lat=48.1374, lon=11.5755, format="json", **{"accept-language": "en"}
    )
    body = await resp.json()
    assert "class" in body
    assert "category" not in body
    assert body["address"]["city"] == "Munich"
    assert body["address"]["state"] == "Bavaria"
    assert body["address"]["country"] == "Germany"
    local = await (await reverse(client, sandbox, lat=48.1374, lon=11.5755, format="json")).json()
    assert local["address"]["city"] == "München"


async def test_same_location_same_answer_and_zoom_levels(client: Client, sandbox: Sandbox) -> None:
    point: dict[str, Any] = {"lat": 40.7130, "lon": -74.0062, "format": "jsonv2"}
    first = await (await reverse(client, sandbox, **point)).json()
    again = await (await reverse(client, sandbox, **point)).json()
    assert first == again
    city = await (await reverse(client, sandbox, zoom=10, **point)).json()
    assert city["addresstype"] == "city"
    assert city["address"]["city"] == "City of New York"
    assert "road" not in city["address"]
    state = await (await reverse(client, sandbox, zoom=5, **point)).json()
    assert state["addresstype"] == "state"
    assert state["name"] == "New York"
    country = await (await reverse(client, sandbox, zoom=3, **point)).json()
    assert country["addresstype"] == "country"
    assert country["address"] == {"country": "United States", "country_code": "us"}
    street = await (await reverse(client, sandbox, zoom=17, **point)).json()
    assert street["addresstype"] == "road"
    assert street["category"] == "highway"


async def test_countryside_gives_region_and_ocean_gives_nothing(
    client: Client, sandbox: Sandbox
) -> None:
    rural = await (await reverse(client, sandbox, lat=49.3, lon=10.0, format="jsonv2")).json()
    assert rural["addresstype"] == "state"
    assert "city" not in rural["address"]
    assert rural["address"]["country_code"] == "de"
    ocean = await reverse(client, sandbox, lat=-40.0, lon=-120.0, format="jsonv2")
    assert ocean.status == 200
    assert await ocean.json() == {"error": "Unable to geocode"}
    xml = await reverse(client, sandbox, lat=-40.0, lon=-120.0)
    assert xml.content_type == "text/xml"
    assert "<error>Unable to geocode</error>" in await xml.text()


async def test_xml_is_the_default_format(client: Client, sandbox: Sandbox) -> None:
    resp = await reverse(client, sandbox, lat=51.5074, lon=-0.1278)
    assert resp.status == 200
    text = await resp.text()
    assert text.startswith('<?xml version="1.0" encoding="UTF-8" ?>')
    assert "<reversegeocode" in text
    assert "<city>London</city>" in text
    assert "<country_code>gb</country_code>" in text


async def test_geojson_and_geocodejson(client: Client, sandbox: Sandbox) -> None:
    geo = await (await reverse(client, sandbox, lat=48.8566, lon=2.3522, format="geojson")).json()
    assert geo["type"] == "FeatureCollection"
    feature = geo["features"][0]
    assert feature["properties"]["address"]["city"] == "Paris"
    assert feature["geometry"]["type"] == "Point"
    gcj = await (
        await reverse(client, sandbox, lat=48.8566, lon=2.3522, format="geocodejson")
    ).json()
    assert gcj["features"][0]["properties"]["geocoding"]["city"] == "Paris"


async def test_identification_is_required(client: Client, sandbox: Sandbox) -> None:
    anonymous = await reverse(client, sandbox, ua=None, lat=52.52, lon=13.4, format="jsonv2")
    assert anonymous.status == 403
    assert anonymous.content_type == "text/html"
    assert "Access blocked" in await anonymous.text()
    stock = await reverse(
        client, sandbox, ua="python-requests/2.32.3", lat=52.52, lon=13.4, format="jsonv2"
    )
    assert stock.status == 403
    sandbox.clock.advance(1.0)
    aiohttp_default = await client.get(REVERSE, params={"lat": "52.52", "lon": "13.4"})
    assert aiohttp_default.status == 403
    sandbox.clock.advance(1.0)
    referer = await client.get(
        REVERSE,
        params={"lat": "52.52", "lon": "13.4", "format": "jsonv2"},
        headers={"Referer": "https://app.example.com/"},
        skip_auto_headers=["User-Agent"],
    )
    assert referer.status == 200


async def test_one_request_per_second_per_client(client: Client, sandbox: Sandbox) -> None:
    params = {"lat": "52.52", "lon": "13.4", "format": "jsonv2"}
    headers = {"User-Agent": UA}
    assert (await client.get(REVERSE, params=params, headers=headers)).status == 200
    limited = await client.get(REVERSE, params=params, headers=headers)
    assert limited.status == 429
    assert "429 Too Many Requests" in await limited.text()
    other_app = await client.get(REVERSE, params=params, headers={"User-Agent": "other-app/2"})
    assert other_app.status == 200
    sandbox.clock.advance(1.0)
    assert (await client.get(REVERSE, params=params, headers=headers)).status == 200
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["rate_limited"]["nominatim GET /reverse"] == 1
    assert stats["calls"]["nominatim GET /reverse"] == 4


async def test_rate_is_configurable(client: Client) -> None:
    params = {"lat": "52.52", "lon": "13.4", "format": "jsonv2"}
    headers = {"User-Agent": UA}
    set_ = await client.post("/_sandbox/nominatim/config", json={"requests_per_second": 0})
    assert set_.status == 200
    for _ in range(5):
        assert (await client.get(REVERSE, params=params, headers=headers)).status == 200
    bad = await client.post("/_sandbox/nominatim/config", json={"colour": 1})
    assert bad.status == 400
    assert (await client.post("/_sandbox/nominatim/config", json={"burst": "x"})).status == 400
    assert (await client.post("/_sandbox/reset")).status == 200
    settings = await (await client.get("/_sandbox/nominatim/config")).json()
    assert settings["requests_per_second"] == 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"lon": "13.4"}, "Parameter 'lat' missing."),
        ({}, "Parameter 'lon' missing."),
        ({"lat": "abc", "lon": "13.4"}, "Parameter 'lat' must be a number."),
        ({"lat": "nan", "lon": "13.4"}, "Parameter 'lat' must be a number."),
        ({"lat": "52.5", "lon": "13.4", "zoom": "x"}, "Parameter 'zoom' must be a number."),
    ],
)
async def test_bad_parameters_are_400_in_the_requested_format(
    client: Client, sandbox: Sandbox, params: dict[str, str], message: str
) -> None:
    resp = await reverse(client, sandbox, format="jsonv2", **params)
    assert resp.status == 400
    assert await resp.json() == {"error": {"code": 400, "message": message}}
    xml = await reverse(client, sandbox, **params)
    assert xml.status == 400
    assert f"<message>{message}</message>" in await xml.text()


async def test_bad_format_and_out_of_range(client: Client, sandbox: Sandbox) -> None:
    resp = await reverse(client, sandbox, lat=52.5, lon=13.4, format="yaml")
    assert resp.status == 400
    assert resp.content_type == "text/plain"
    assert (await resp.text()).startswith("Parameter 'format' must be one of: xml,")
    # Nominatim finds nothing outside valid coordinates rather than rejecting them.
    far = await reverse(client, sandbox, lat=91, lon=13.4, format="jsonv2")
    assert far.status == 200
    assert await far.json() == {"error": "Unable to geocode"}


async def test_injected_faults_use_front_server_pages(client: Client, sandbox: Sandbox) -> None:
    await client.post(
        "/_sandbox/faults",
        json={"provider": "nominatim", "endpoint": "GET /reverse", "status": 503, "count": 1},
    )
    resp = await reverse(client, sandbox, lat=52.5, lon=13.4, format="jsonv2")
    assert resp.status == 503
    assert "503 Service Unavailable" in await resp.text()
    assert (await reverse(client, sandbox, lat=52.5, lon=13.4, format="jsonv2")).status == 200


async def test_places_listing(client: Client) -> None:
    body = await (await client.get("/_sandbox/nominatim/places")).json()
    assert len(body["places"]) >= 40
    assert {"berlin", "boulder", "tokyo"} <= {p["key"] for p in body["places"]}
