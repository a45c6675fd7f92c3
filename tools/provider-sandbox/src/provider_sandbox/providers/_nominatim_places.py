"""The sandbox's small gazetteer: ~40 real cities with their region, country and time zone.

Nominatim's reverse geocoding answers from it, and Open-Meteo's ``timezone=auto`` resolves
the zone of the nearest city (PROVIDERS.md §8.3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088


@dataclass(frozen=True)
class Place:
    key: str
    name: str  # the OSM `name` tag: local language, as Nominatim shows without accept-language
    name_en: str
    state: str | None
    state_en: str | None
    iso_lvl4: str | None
    county: str | None
    country: str
    country_en: str
    country_code: str
    lat: float
    lon: float
    postcode: str | None
    tz: str
    roads: str  # key into ROADS
    suburbs: tuple[str, ...] = ()
    kind: str = "city"


ROADS: dict[str, tuple[str, ...]] = {
    "de": ("Hauptstraße", "Bahnhofstraße", "Schulstraße", "Gartenstraße", "Lindenstraße"),
    "gb": ("High Street", "Station Road", "Church Street", "Park Road", "Victoria Road"),
    "us": ("Main Street", "Oak Street", "Maple Avenue", "Park Avenue", "Washington Street"),
    "en": ("Church Street", "Victoria Street", "Queen Street", "Park Road", "King Street"),
    "fr": ("Rue de la République", "Rue Victor Hugo", "Avenue Jean Jaurès", "Rue Pasteur"),
    "es": ("Calle Mayor", "Calle Real", "Avenida de la Constitución", "Calle Nueva"),
    "it": ("Via Roma", "Via Giuseppe Garibaldi", "Via Giuseppe Mazzini", "Corso Italia"),
    "nl": ("Kerkstraat", "Dorpsstraat", "Stationsweg", "Molenstraat"),
    "pt": ("Rua Augusta", "Rua das Flores", "Avenida da Liberdade", "Rua do Comércio"),
    "br": ("Avenida Paulista", "Rua Augusta", "Rua da Consolação", "Rua XV de Novembro"),
    "ja": ("中央通り", "本町通り", "駅前通り", "桜通り"),
    "da": ("Vestergade", "Østergade", "Nørregade", "Søndergade"),
    "sv": ("Storgatan", "Drottninggatan", "Kungsgatan", "Skolgatan"),
    "no": ("Storgata", "Kirkegata", "Parkveien", "Skolegata"),
    "pl": ("Polna", "Lipowa", "Ogrodowa", "Słoneczna"),
    "cs": ("Nádražní", "Školní", "Husova", "Masarykova"),
    "is": ("Laugavegur", "Hverfisgata", "Skólavörðustígur", "Bankastræti"),
}


def _p(
    key: str,
    name: tuple[str, str],
    state: tuple[str, str] | None,
    iso_lvl4: str | None,
    country: tuple[str, str, str],
    at: tuple[float, float],
    postcode: str | None,
    tz: str,
    roads: str,
    suburbs: tuple[str, ...] = (),
    county: str | None = None,
) -> Place:
    return Place(
        key=key,
        name=name[0],
        name_en=name[1],
        state=state[0] if state else None,
        state_en=state[1] if state else None,
        iso_lvl4=iso_lvl4,
        county=county,
        country=country[0],
        country_en=country[1],
        country_code=country[2],
        lat=at[0],
        lon=at[1],
        postcode=postcode,
        tz=tz,
        roads=roads,
        suburbs=suburbs,
    )


DE = ("Deutschland", "Germany", "de")
GB = ("United Kingdom", "United Kingdom", "gb")
FR = ("France", "France", "fr")
ES = ("España", "Spain", "es")
IT = ("Italia", "Italy", "it")
US = ("United States", "United States", "us")
CA = ("Canada", "Canada", "ca")
AU = ("Australia", "Australia", "au")

PLACES: tuple[Place, ...] = (
    _p("berlin", ("Berlin", "Berlin"), None, "DE-BE", DE, (52.5200, 13.4050), "10117",
       "Europe/Berlin", "de", ("Mitte", "Kreuzberg", "Prenzlauer Berg", "Charlottenburg")),
    _p("hamburg", ("Hamburg", "Hamburg"), None, "DE-HH", DE, (53.5511, 9.9937), "20095",
       "Europe/Berlin", "de", ("Altona", "St. Pauli", "Eimsbüttel")),
    _p("munich", ("München", "Munich"), ("Bayern", "Bavaria"), "DE-BY", DE, (48.1374, 11.5755),
       "80331", "Europe/Berlin", "de", ("Altstadt-Lehel", "Maxvorstadt", "Schwabing")),
    _p("cologne", ("Köln", "Cologne"), ("Nordrhein-Westfalen", "North Rhine-Westphalia"),
       "DE-NW", DE, (50.9375, 6.9603), "50667", "Europe/Berlin", "de",
       ("Altstadt-Nord", "Ehrenfeld", "Deutz")),
    _p("frankfurt", ("Frankfurt am Main", "Frankfurt"), ("Hessen", "Hesse"), "DE-HE", DE,
       (50.1109, 8.6821), "60311", "Europe/Berlin", "de",
       ("Innenstadt", "Sachsenhausen", "Bockenheim")),
    _p("london", ("London", "London"), ("England", "England"), "GB-ENG", GB, (51.5074, -0.1278),
       "WC2N 5DU", "Europe/London", "gb", ("Westminster", "Camden Town", "Islington"),
       county="Greater London"),
    _p("manchester", ("Manchester", "Manchester"), ("England", "England"), "GB-ENG", GB,
       (53.4808, -2.2426), "M2 5DB", "Europe/London", "gb", ("Ancoats", "Hulme", "Didsbury"),
       county="Greater Manchester"),
    _p("edinburgh", ("Edinburgh", "Edinburgh"), ("Alba / Scotland", "Scotland"),
       "GB-SCT", GB, (55.9533, -3.1883), "EH1 1YZ", "Europe/London", "gb",
       ("Old Town", "New Town", "Leith")),
    _p("paris", ("Paris", "Paris"), ("Île-de-France", "Ile-de-France"), "FR-IDF", FR,
       (48.8566, 2.3522), "75004", "Europe/Paris", "fr",
       ("Paris 1er Arrondissement", "Paris 4e Arrondissement", "Paris 18e Arrondissement")),
    _p("lyon", ("Lyon", "Lyon"), ("Auvergne-Rhône-Alpes", "Auvergne-Rhône-Alpes"), "FR-ARA", FR,
       (45.7640, 4.8357), "69002", "Europe/Paris", "fr",
       ("Lyon 1er Arrondissement", "Lyon 2e Arrondissement", "Lyon 7e Arrondissement")),
    _p("marseille", ("Marseille", "Marseille"),
       ("Provence-Alpes-Côte d'Azur", "Provence-Alpes-Côte d'Azur"), "FR-PAC", FR,
       (43.2965, 5.3698), "13001", "Europe/Paris", "fr",
       ("Marseille 1er Arrondissement", "Marseille 7e Arrondissement")),
    _p("madrid", ("Madrid", "Madrid"), ("Comunidad de Madrid", "Community of Madrid"), "ES-MD",
       ES, (40.4168, -3.7038), "28013", "Europe/Madrid", "es",
       ("Centro", "Salamanca", "Chamberí")),
    _p("barcelona", ("Barcelona", "Barcelona"), ("Catalunya", "Catalonia"), "ES-CT", ES,
       (41.3874, 2.1686), "08002", "Europe/Madrid", "es", ("Ciutat Vella", "Eixample", "Gràcia")),
    _p("rome", ("Roma", "Rome"), ("Lazio", "Lazio"), "IT-62", IT, (41.9028, 12.4964), "00186",
       "Europe/Rome", "it", ("Municipio Roma I", "Municipio Roma II")),
    _p("milan", ("Milano", "Milan"), ("Lombardia", "Lombardy"), "IT-25", IT, (45.4642, 9.1900),
       "20121", "Europe/Rome", "it", ("Municipio 1", "Municipio 3")),
    _p("amsterdam", ("Amsterdam", "Amsterdam"), ("Noord-Holland", "North Holland"), "NL-NH",
       ("Nederland", "Netherlands", "nl"), (52.3676, 4.9041), "1012 JS", "Europe/Amsterdam",
       "nl", ("Centrum", "Oost", "Zuid")),
    _p("vienna", ("Wien", "Vienna"), None, "AT-9", ("Österreich", "Austria", "at"),
       (48.2082, 16.3738), "1010", "Europe/Vienna", "de",
       ("Innere Stadt", "Leopoldstadt", "Landstraße")),
    _p("zurich", ("Zürich", "Zurich"), ("Zürich", "Zurich"), "CH-ZH",
       ("Schweiz/Suisse/Svizzera/Svizra", "Switzerland", "ch"), (47.3769, 8.5417), "8001",
       "Europe/Zurich", "de", ("Kreis 1", "Kreis 4", "Kreis 11")),
    _p("copenhagen", ("København", "Copenhagen"),
       ("Region Hovedstaden", "Capital Region of Denmark"), "DK-84",
       ("Danmark", "Denmark", "dk"), (55.6761, 12.5683), "1550",
       "Europe/Copenhagen", "da", ("Indre By", "Nørrebro", "Vesterbro")),
    _p("stockholm", ("Stockholm", "Stockholm"), ("Stockholms län", "Stockholm County"), "SE-AB",
       ("Sverige", "Sweden", "se"), (59.3293, 18.0686), "111 29", "Europe/Stockholm", "sv",
       ("Norrmalm", "Södermalm", "Östermalm")),
    _p("oslo", ("Oslo", "Oslo"), None, "NO-03", ("Norge", "Norway", "no"), (59.9139, 10.7522),
       "0150", "Europe/Oslo", "no", ("Sentrum", "Grünerløkka", "Frogner")),
    _p("warsaw", ("Warszawa", "Warsaw"), ("województwo mazowieckie", "Masovian Voivodeship"),
       "PL-14", ("Polska", "Poland", "pl"), (52.2297, 21.0122), "00-001", "Europe/Warsaw", "pl",
       ("Śródmieście", "Mokotów", "Praga-Północ")),
    _p("prague", ("Praha", "Prague"), None, "CZ-10", ("Česko", "Czechia", "cz"),
       (50.0755, 14.4378), "110 00", "Europe/Prague", "cs",
       ("Staré Město", "Vinohrady", "Smíchov")),
    _p("lisbon", ("Lisboa", "Lisbon"), ("Lisboa", "Lisbon"), "PT-11",
       ("Portugal", "Portugal", "pt"), (38.7223, -9.1393), "1100-148", "Europe/Lisbon", "pt",
       ("Santa Maria Maior", "Misericórdia", "Arroios")),
    _p("dublin", ("Dublin", "Dublin"), ("Leinster", "Leinster"), None,
       ("Éire / Ireland", "Ireland", "ie"), (53.3498, -6.2603), "D02 X285", "Europe/Dublin",
       "en", ("Rathmines", "Ballsbridge", "Drumcondra"), county="County Dublin"),
    _p("reykjavik", ("Reykjavík", "Reykjavik"), ("Höfuðborgarsvæðið", "Capital Region"),
       "IS-1", ("Ísland", "Iceland", "is"), (64.1466, -21.9426), "101", "Atlantic/Reykjavik",
       "is", ("Miðborg", "Vesturbær")),
    _p("new_york", ("City of New York", "New York"), ("New York", "New York"), "US-NY", US,
       (40.7128, -74.0060), "10007", "America/New_York", "us", ("Manhattan",),
       county="New York County"),
    _p("boston", ("Boston", "Boston"), ("Massachusetts", "Massachusetts"), "US-MA", US,
       (42.3601, -71.0589), "02108", "America/New_York", "us",
       ("Back Bay", "Beacon Hill", "South End"), county="Suffolk County"),
    _p("chicago", ("Chicago", "Chicago"), ("Illinois", "Illinois"), "US-IL", US,
       (41.8781, -87.6298), "60602", "America/Chicago", "us",
       ("Loop", "Lincoln Park", "Hyde Park"), county="Cook County"),
    _p("boulder", ("Boulder", "Boulder"), ("Colorado", "Colorado"), "US-CO", US,
       (40.0150, -105.2705), "80302", "America/Denver", "us", (), county="Boulder County"),
    _p("los_angeles", ("Los Angeles", "Los Angeles"), ("California", "California"), "US-CA", US,
       (34.0522, -118.2437), "90012", "America/Los_Angeles", "us",
       ("Downtown", "Hollywood", "Westwood"), county="Los Angeles County"),
    _p("san_francisco", ("San Francisco", "San Francisco"), ("California", "California"),
       "US-CA", US, (37.7749, -122.4194), "94102", "America/Los_Angeles", "us",
       ("Mission District", "Noe Valley", "Richmond District")),
    _p("seattle", ("Seattle", "Seattle"), ("Washington", "Washington"), "US-WA", US,
       (47.6062, -122.3321), "98104", "America/Los_Angeles", "us",
       ("Belltown", "Capitol Hill", "Fremont"), county="King County"),
    _p("toronto", ("Toronto", "Toronto"), ("Ontario", "Ontario"), "CA-ON", CA,
       (43.6532, -79.3832), "M5H 2N2", "America/Toronto", "us", ("Old Toronto",)),
    _p("vancouver", ("Vancouver", "Vancouver"), ("British Columbia", "British Columbia"),
       "CA-BC", CA, (49.2827, -123.1207), "V6B 1A1", "America/Vancouver", "us",
       ("Downtown", "Kitsilano", "Mount Pleasant")),
    _p("mexico_city", ("Ciudad de México", "Mexico City"), None, "MX-CMX",
       ("México", "Mexico", "mx"), (19.4326, -99.1332), "06000", "America/Mexico_City", "es",
       ("Cuauhtémoc", "Coyoacán", "Miguel Hidalgo")),
    _p("sao_paulo", ("São Paulo", "São Paulo"), ("São Paulo", "São Paulo"), "BR-SP",
       ("Brasil", "Brazil", "br"), (-23.5505, -46.6333), "01001-000", "America/Sao_Paulo", "br",
       ("Sé", "República", "Pinheiros")),
    _p("buenos_aires", ("Buenos Aires", "Buenos Aires"), None, "AR-C",
       ("Argentina", "Argentina", "ar"), (-34.6037, -58.3816), "C1002",
       "America/Argentina/Buenos_Aires", "es", ("Balvanera", "Palermo", "San Telmo")),
    _p("tokyo", ("東京都", "Tokyo"), None, "JP-13", ("日本", "Japan", "jp"), (35.6762, 139.6503),
       "160-0022", "Asia/Tokyo", "ja", ("新宿区", "渋谷区", "千代田区")),
    _p("singapore", ("Singapore", "Singapore"), None, None, ("Singapore", "Singapore", "sg"),
       (1.3521, 103.8198), "048583", "Asia/Singapore", "en", ("Downtown Core",)),
    _p("mumbai", ("Mumbai", "Mumbai"), ("Maharashtra", "Maharashtra"), "IN-MH",
       ("India", "India", "in"), (19.0760, 72.8777), "400001", "Asia/Kolkata", "en",
       ("Colaba", "Bandra West", "Andheri West")),
    _p("sydney", ("Sydney", "Sydney"), ("New South Wales", "New South Wales"), "AU-NSW", AU,
       (-33.8688, 151.2093), "2000", "Australia/Sydney", "en",
       ("Surry Hills", "Newtown", "Bondi")),
    _p("melbourne", ("Melbourne", "Melbourne"), ("Victoria", "Victoria"), "AU-VIC", AU,
       (-37.8136, 144.9631), "3000", "Australia/Melbourne", "en",
       ("Carlton", "Fitzroy", "Southbank")),
    _p("auckland", ("Auckland", "Auckland"), ("Auckland", "Auckland"), "NZ-AUK",
       ("New Zealand / Aotearoa", "New Zealand", "nz"), (-36.8485, 174.7633), "1010",
       "Pacific/Auckland", "en", ("Auckland Central", "Ponsonby", "Parnell")),
    _p("cape_town", ("Cape Town", "Cape Town"), ("Western Cape", "Western Cape"), "ZA-WC",
       ("South Africa", "South Africa", "za"), (-33.9249, 18.4241), "8001",
       "Africa/Johannesburg", "en", ("Gardens", "Sea Point", "Woodstock")),
    _p("nairobi", ("Nairobi", "Nairobi"), ("Nairobi County", "Nairobi County"), "KE-30",
       ("Kenya", "Kenya", "ke"), (-1.2921, 36.8219), "00100", "Africa/Nairobi", "en",
       ("Westlands", "Kilimani")),
)  # fmt: skip


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def nearest(lat: float, lon: float) -> tuple[Place, float]:
    """The closest city and its distance; ~40 rows, so a scan beats any index."""
    best = PLACES[0]
    best_km = distance_km(lat, lon, best.lat, best.lon)
    for place in PLACES[1:]:
        km = distance_km(lat, lon, place.lat, place.lon)
        if km < best_km:
            best, best_km = place, km
    return best, best_km
