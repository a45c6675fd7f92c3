"""Enriching a page of Strava activities: weather at the start point and hour, and the
city / state / country of the start point. Enrichment never fails an activity: what
could not be found is stored with ``enrichment_status.<kind> = false`` and the periodic
pass (:meth:`ActivityEnricher.fill`) completes it later.

Geocoding is held to Nominatim's one request per second, so a page uses the cache plus
at most ``inline_lookups`` fresh lookups; a backfill of thousands of activities in new
places is never stalled by that policy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sync_worker.enrichment.geocoding import GeocodingClient, Place
from sync_worker.enrichment.weather import WeatherClient, weather_key
from sync_worker.providers.strava import Activity
from sync_worker.strava_store import StoredActivity


@dataclass(frozen=True, slots=True)
class Point:
    lat: float
    lng: float
    at: datetime


@dataclass(frozen=True, slots=True)
class Found:
    weather: dict[str, Any] | None
    place: Place | None
    status: dict[str, bool]


class ActivityEnricher:
    def __init__(
        self,
        weather: WeatherClient | None,
        geocoding: GeocodingClient | None,
        *,
        inline_lookups: int,
    ) -> None:
        self.weather = weather
        self.geocoding = geocoding
        self.inline_lookups = inline_lookups

    async def enrich(
        self, activities: Sequence[Activity], *, quick: bool = False
    ) -> list[StoredActivity]:
        """``quick``: from the caches only (a webhook must not queue behind Open-Meteo's
        one-request-at-a-time or Nominatim's 1/s); the enrichment pass fills the rest."""
        points = [
            None
            if a.start_latlng is None
            else Point(a.start_latlng[0], a.start_latlng[1], a.start_date)
            for a in activities
        ]
        found = await self.find(points, 0 if quick else self.inline_lookups, quick=quick)
        return [
            StoredActivity(
                activity=a,
                weather=f.weather,
                city=f.place.city if f.place else None,
                state=f.place.state if f.place else None,
                country=f.place.country if f.place else None,
                enrichment=f.status,
            )
            for a, f in zip(activities, found, strict=True)
        ]

    async def find(
        self, points: Sequence[Point | None], lookups: int, *, quick: bool = False
    ) -> list[Found]:
        """Weather and place per point. A point that is None (no GPS) has nothing to
        find: it counts as enriched, or the later pass would retry it for ever."""
        weather_by_key: dict[Any, Any] = {}
        located = [p for p in points if p is not None]
        if self.weather is not None and located:
            asked = [(p.lat, p.lng, p.at) for p in located]
            if quick:
                weather_by_key = self.weather.cached_for(asked)
            else:
                weather_by_key = await self.weather.weather_for(asked)
        results: list[Found] = []
        for point in points:
            if point is None:
                results.append(Found(None, None, {"weather": True, "geocoding": True}))
                continue
            weather = None
            if self.weather is not None:
                found = weather_by_key.get(weather_key(point.lat, point.lng, point.at))
                weather = None if found is None else dataclasses.asdict(found)
            place = None
            if self.geocoding is not None:
                place = self.geocoding.cached(point.lat, point.lng)
                if place is None and lookups > 0:
                    lookups -= 1
                    place = await self.geocoding.place_for(point.lat, point.lng)
            results.append(
                Found(
                    weather,
                    place,
                    {
                        # A disabled enrichment is not "missing": nothing will fill it.
                        "weather": self.weather is None or weather is not None,
                        "geocoding": self.geocoding is None or place is not None,
                    },
                )
            )
        return results
