"""Activity enrichment: weather (Open-Meteo archive) and reverse geocoding (Nominatim),
each behind a circuit breaker and a cache, never failing the activity they enrich
(issue 6; PROVIDERS.md §8)."""

from sync_worker.enrichment.breaker import BreakerState, CircuitBreaker
from sync_worker.enrichment.cache import Cache, TtlCache
from sync_worker.enrichment.geocoding import GeocodingClient, Place, place_key
from sync_worker.enrichment.weather import (
    HOURLY_VARIABLES,
    Weather,
    WeatherClient,
    WeatherKey,
    weather_key,
)

__all__ = [
    "HOURLY_VARIABLES",
    "BreakerState",
    "Cache",
    "CircuitBreaker",
    "GeocodingClient",
    "Place",
    "TtlCache",
    "Weather",
    "WeatherClient",
    "WeatherKey",
    "place_key",
    "weather_key",
]
