"""Nominatim's output formats for ``/reverse`` (xml, json, jsonv2, geojson, geocodejson):
field order, string-typed coordinates and the ``Unable to geocode`` answer as Nominatim
writes them (nominatim.org/release-docs/latest/api/Output/)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from provider_sandbox.providers._nominatim_reverse import Result

LICENCE = "Data © OpenStreetMap contributors, ODbL 1.0. http://osm.org/copyright"
FORMATS = ("xml", "geojson", "geocodejson", "json", "jsonv2")
CONTENT_JSON = "application/json"
CONTENT_XML = "text/xml"
NOT_FOUND = '{"error":"Unable to geocode"}'

_GEOCODEJSON_KEYS = {
    "house_number": "housenumber",
    "road": "street",
    "suburb": "district",
    "city": "city",
    "county": "county",
    "state": "state",
    "postcode": "postcode",
    "country": "country",
}
_GEOCODEJSON_TYPE = {
    4: "country",
    8: "state",
    16: "city",
    20: "district",
    26: "street",
    30: "house",
}


@dataclass(frozen=True)
class Options:
    addressdetails: bool = True
    extratags: bool = False
    namedetails: bool = False


def content_type(fmt: str) -> str:
    return CONTENT_XML if fmt == "xml" else CONTENT_JSON


def render(
    result: Result | None, fmt: str, options: Options, querystring: str, now: datetime
) -> str:
    if fmt == "xml":
        return _xml(result, options, querystring, now)
    if result is None:
        return NOT_FOUND
    if fmt == "geojson":
        return _dump(_geojson(result, options))
    if fmt == "geocodejson":
        return _dump(_geocodejson(result, options))
    return _dump(_json(result, options, "category" if fmt == "jsonv2" else "class"))


def error_body(fmt: str | None, status: int, message: str) -> tuple[str, str]:
    """Nominatim formats errors for the requested output; before the format is known it
    answers plain text."""
    if fmt in ("json", "jsonv2", "geojson", "geocodejson"):
        return _dump({"error": {"code": status, "message": message}}), CONTENT_JSON
    if fmt == "xml":
        root = ET.Element("error")
        ET.SubElement(root, "code").text = str(status)
        ET.SubElement(root, "message").text = message
        return '<?xml version="1.0" encoding="UTF-8" ?>\n' + ET.tostring(
            root, encoding="unicode"
        ), CONTENT_XML
    return message, "text/plain"


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _bbox_strings(result: Result) -> list[str]:
    return [f"{v:.7f}" for v in result.bbox]


def _json(result: Result, options: Options, class_label: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "place_id": result.place_id,
        "licence": LICENCE,
        "osm_type": result.osm_type,
        "osm_id": result.osm_id,
        "lat": f"{result.lat:.7f}",
        "lon": f"{result.lon:.7f}",
        class_label: result.category,
        "type": result.type,
        "place_rank": result.place_rank,
        "importance": result.importance,
        "addresstype": result.addresstype,
        "name": result.name,
        "display_name": result.display_name,
    }
    _details(out, result, options)
    out["boundingbox"] = _bbox_strings(result)
    return out


def _details(out: dict[str, Any], result: Result, options: Options) -> None:
    if options.addressdetails:
        out["address"] = dict(result.address)
    if options.extratags:
        out["extratags"] = {}
    if options.namedetails:
        out["namedetails"] = dict(result.names)


def _geojson(result: Result, options: Options) -> dict[str, Any]:
    props: dict[str, Any] = {
        "place_id": result.place_id,
        "osm_type": result.osm_type,
        "osm_id": result.osm_id,
        "place_rank": result.place_rank,
        "category": result.category,
        "type": result.type,
        "importance": result.importance,
        "addresstype": result.addresstype,
        "name": result.name,
        "display_name": result.display_name,
    }
    _details(props, result, options)
    minlat, maxlat, minlon, maxlon = result.bbox
    return {
        "type": "FeatureCollection",
        "licence": LICENCE,
        "features": [
            {
                "type": "Feature",
                "properties": props,
                "bbox": [round(minlon, 7), round(minlat, 7), round(maxlon, 7), round(maxlat, 7)],
                "geometry": {"type": "Point", "coordinates": [result.lon, result.lat]},
            }
        ],
    }


def _geocodejson(result: Result, options: Options) -> dict[str, Any]:
    inner: dict[str, Any] = {
        "place_id": result.place_id,
        "osm_type": result.osm_type,
        "osm_id": result.osm_id,
        "osm_key": result.category,
        "osm_value": result.type,
        "type": _GEOCODEJSON_TYPE.get(result.place_rank, "locality"),
        "label": result.display_name,
    }
    if result.name:
        inner["name"] = result.name
    if options.addressdetails:
        for key, value in result.address:
            mapped = _GEOCODEJSON_KEYS.get(key)
            if mapped and mapped not in inner:
                inner[mapped] = value
        inner["country_code"] = result.country_code
        inner["admin"] = {}
    return {
        "type": "FeatureCollection",
        "geocoding": {"version": "0.1.0", "attribution": LICENCE, "licence": "ODbL", "query": ""},
        "features": [
            {
                "type": "Feature",
                "properties": {"geocoding": inner},
                "geometry": {"type": "Point", "coordinates": [result.lon, result.lat]},
            }
        ],
    }


def _xml(result: Result | None, options: Options, querystring: str, now: datetime) -> str:
    root = ET.Element("reversegeocode")
    root.set("timestamp", now.strftime("%a, %d %b %Y %H:%M:%S +00:00"))
    root.set("attribution", LICENCE)
    root.set("querystring", querystring)
    if result is None:
        ET.SubElement(root, "error").text = "Unable to geocode"
    else:
        place = ET.SubElement(root, "result")
        place.set("place_id", str(result.place_id))
        place.set("osm_type", result.osm_type)
        place.set("osm_id", str(result.osm_id))
        if result.name:
            place.set("ref", result.name)
        place.set("lat", f"{result.lat:.7f}")
        place.set("lon", f"{result.lon:.7f}")
        place.set("boundingbox", ",".join(_bbox_strings(result)))
        place.set("place_rank", str(result.place_rank))
        place.set("address_rank", str(result.place_rank))
        place.text = result.display_name
        if options.addressdetails:
            parts = ET.SubElement(root, "addressparts")
            for key, value in result.address:
                ET.SubElement(parts, key).text = value
        if options.extratags:
            ET.SubElement(root, "extratags")
        if options.namedetails:
            names = ET.SubElement(root, "namedetails")
            for key, value in result.names:
                ET.SubElement(names, "name", attrib={"desc": key}).text = value
    return '<?xml version="1.0" encoding="UTF-8" ?>\n' + ET.tostring(root, encoding="unicode")
