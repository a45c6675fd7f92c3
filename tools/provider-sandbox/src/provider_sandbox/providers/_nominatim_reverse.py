"""Reverse geocoding over the sandbox gazetteer: which place a coordinate resolves to at a
given zoom, deterministic per rounded location (Nominatim ``/reverse`` semantics)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from provider_sandbox.providers._nominatim_places import ROADS, Place, nearest

# Nominatim answers address-level objects by rank; zoom picks the finest rank allowed
# (3 country, 5 state, 10 city, 14 suburb, 16-17 streets, 18 building).
COUNTRY, STATE, CITY, SUBURB, ROAD, BUILDING = "country", "state", "city", "suburb", "road", "b"


def level_for_zoom(zoom: int) -> str:
    if zoom <= 4:
        return COUNTRY
    if zoom <= 9:
        return STATE
    if zoom <= 12:
        return CITY
    if zoom <= 15:
        return SUBURB
    if zoom <= 17:
        return ROAD
    return BUILDING


@dataclass(frozen=True)
class Result:
    place_id: int
    osm_type: str
    osm_id: int
    lat: float
    lon: float
    category: str
    type: str
    place_rank: int
    importance: float
    addresstype: str
    name: str
    address: tuple[tuple[str, str], ...]  # ordered finest first, as Nominatim writes it
    country_code: str
    bbox: tuple[float, float, float, float]  # minlat, maxlat, minlon, maxlon
    names: tuple[tuple[str, str], ...] = ()

    @property
    def display_name(self) -> str:
        return ", ".join(
            v for k, v in self.address if k != "country_code" and not k.startswith("ISO3166")
        )


@dataclass(frozen=True)
class Radii:
    city_km: float = 50.0
    rural_km: float = 1000.0


def _h(*parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def _unit(*parts: object) -> float:
    return _h(*parts) / 2.0**64


def _box(lat: float, lon: float, dlat: float, dlon: float) -> tuple[float, float, float, float]:
    return (
        max(-90.0, lat - dlat),
        min(90.0, lat + dlat),
        max(-180.0, lon - dlon),
        min(180.0, lon + dlon),
    )


def reverse(lat: float, lon: float, zoom: int, english: bool, radii: Radii) -> Result | None:
    """None where Nominatim finds nothing (open ocean, far from every known place)."""
    place, km = nearest(lat, lon)
    if km > radii.rural_km:
        return None
    level = level_for_zoom(zoom)
    if km > radii.city_km and level not in (COUNTRY, STATE):
        level = STATE  # countryside: only the region and country are known here
    if level == STATE and place.state is None:
        level = COUNTRY if km > radii.city_km else CITY
    if level == SUBURB and not place.suburbs:
        level = CITY
    return _build(place, level, lat, lon, english)


def _names(place: Place, english: bool) -> tuple[str, str | None, str]:
    if english:
        return place.name_en, place.state_en, place.country_en
    return place.name, place.state, place.country


def _tail(place: Place, state: str | None, country: str) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    if place.county:
        rows.append(("county", place.county))
    if state:
        rows.append(("state", state))
    if place.iso_lvl4:
        rows.append(("ISO3166-2-lvl4", place.iso_lvl4))
    return rows


def _build(place: Place, level: str, lat: float, lon: float, english: bool) -> Result:
    city, state, country = _names(place, english)
    cc = place.country_code
    country_rows = [("country", country), ("country_code", cc)]
    names = (("name", place.name), ("name:en", place.name_en))
    if level == COUNTRY:
        return Result(
            place_id=_h("country", cc) % 300_000_000 + 1_000_000,
            osm_type="relation",
            osm_id=_h("country-osm", cc) % 2_000_000 + 50_000,
            lat=place.lat,
            lon=place.lon,
            category="boundary",
            type="administrative",
            place_rank=4,
            importance=0.85 + _unit("ci", cc) * 0.1,
            addresstype="country",
            name=country,
            address=(("country", country), ("country_code", cc)),
            country_code=cc,
            bbox=_box(place.lat, place.lon, 5.0, 8.0),
            names=(("name", place.country), ("name:en", place.country_en)),
        )
    if level == STATE:
        state_name = state or country
        rows = [("state", state_name)]
        if place.iso_lvl4:
            rows.append(("ISO3166-2-lvl4", place.iso_lvl4))
        return Result(
            place_id=_h("state", place.key) % 300_000_000 + 1_000_000,
            osm_type="relation",
            osm_id=_h("state-osm", place.key) % 2_000_000 + 50_000,
            lat=place.lat,
            lon=place.lon,
            category="boundary",
            type="administrative",
            place_rank=8,
            importance=0.7 + _unit("si", place.key) * 0.1,
            addresstype="state",
            name=state_name,
            address=(*rows, *country_rows),
            country_code=cc,
            bbox=_box(place.lat, place.lon, 1.5, 2.0),
            names=(("name", place.state or ""), ("name:en", place.state_en or "")),
        )
    city_rows = [("city", city), *_tail(place, state, country)]
    if level == CITY:
        return Result(
            place_id=_h("city", place.key) % 300_000_000 + 1_000_000,
            osm_type="relation",
            osm_id=_h("city-osm", place.key) % 2_000_000 + 50_000,
            lat=place.lat,
            lon=place.lon,
            category="boundary",
            type="administrative",
            place_rank=16,
            importance=0.6 + _unit("cti", place.key) * 0.25,
            addresstype="city",
            name=city,
            address=(*city_rows, *country_rows),
            country_code=cc,
            bbox=_box(place.lat, place.lon, 0.15, 0.25),
            names=names,
        )
    # Finer levels key on the rounded input so nearby points agree and far ones differ.
    rlat, rlon = round(lat, 4), round(lon, 4)
    suburb = None
    if place.suburbs:
        pick = _h("suburb", place.key, round(lat, 2), round(lon, 2)) % len(place.suburbs)
        suburb = place.suburbs[pick]
    post = [("postcode", place.postcode)] if place.postcode else []
    suburb_rows = [("suburb", suburb)] if suburb else []
    if level == SUBURB and suburb:
        return Result(
            place_id=_h("suburb", place.key, suburb) % 300_000_000 + 1_000_000,
            osm_type="relation",
            osm_id=_h("suburb-osm", place.key, suburb) % 10_000_000 + 100_000,
            lat=place.lat + (_unit("sl", suburb) - 0.5) * 0.04,
            lon=place.lon + (_unit("so", suburb) - 0.5) * 0.06,
            category="boundary",
            type="administrative",
            place_rank=20,
            importance=0.25 + _unit("sui", suburb) * 0.1,
            addresstype="suburb",
            name=suburb,
            address=(*suburb_rows, *city_rows, *post, *country_rows),
            country_code=cc,
            bbox=_box(place.lat, place.lon, 0.02, 0.03),
            names=(("name", suburb),),
        )
    roads = ROADS[place.roads]
    road = roads[_h("road", place.key, round(lat, 3), round(lon, 3)) % len(roads)]
    road_rows = [("road", road), *suburb_rows, *city_rows, *post, *country_rows]
    # Snap onto the "road": a few metres off the query point, as a real nearest-way would be.
    slat = rlat + (_unit("rl", rlat, rlon) - 0.5) * 0.0002
    slon = rlon + (_unit("ro", rlat, rlon) - 0.5) * 0.0002
    if level == BUILDING and _unit("house?", rlat, rlon) < 0.7:
        number = str(1 + _h("no", rlat, rlon) % 180)
        return Result(
            place_id=_h("house", rlat, rlon) % 300_000_000 + 1_000_000,
            osm_type="way",
            osm_id=_h("house-osm", rlat, rlon) % 900_000_000 + 20_000_000,
            lat=slat,
            lon=slon,
            category="building",
            type="yes",
            place_rank=30,
            importance=9.99999999995449e-06,
            addresstype="building",
            name="",
            address=(("house_number", number), *road_rows),
            country_code=cc,
            bbox=_box(slat, slon, 0.00006, 0.00009),
        )
    road_type = ("residential", "tertiary", "secondary", "primary")[_h("rt", place.key, road) % 4]
    return Result(
        place_id=_h("road", place.key, road) % 300_000_000 + 1_000_000,
        osm_type="way",
        osm_id=_h("road-osm", place.key, road) % 900_000_000 + 20_000_000,
        lat=slat,
        lon=slon,
        category="highway",
        type=road_type,
        place_rank=26,
        importance=0.0533 + _unit("ri", place.key, road) * 0.01,
        addresstype="road",
        name=road,
        address=tuple(road_rows),
        country_code=cc,
        bbox=_box(slat, slon, 0.002, 0.003),
        names=(("name", road),),
    )
