"""Defaults of the synthetic population: behaviour mix, corridors, currencies, activity shape.

Every number here is a modelling assumption chosen to look plausible, not an estimate; the
values that a user may want to change are arguments of ``generate``. See docs/synthetic.md.
"""

from __future__ import annotations

import pycountry

from mobility.errors import ConfigError

BEHAVIOURS = ("stayer", "short_trip", "emigrant_long_term", "temporary_worker",
              "returning_migrant", "immigrant", "inbound_roamer")

DEFAULT_BEHAVIOUR_SHARES = {
    "stayer": 0.78,
    "short_trip": 0.06,
    "emigrant_long_term": 0.05,
    "temporary_worker": 0.04,
    "returning_migrant": 0.03,
    "immigrant": 0.02,
    "inbound_roamer": 0.02,
}

# Asia-Pacific labour corridors (destination -> weight); the weights are illustrative only.
DEFAULT_CORRIDORS = {
    "PHL": {"SAU": 0.30, "ARE": 0.22, "HKG": 0.14, "QAT": 0.12, "SGP": 0.12, "KWT": 0.10},
    "NPL": {"MYS": 0.35, "QAT": 0.25, "SAU": 0.22, "ARE": 0.18},
    "IDN": {"MYS": 0.40, "TWN": 0.25, "SAU": 0.20, "HKG": 0.15},
    "MMR": {"THA": 0.75, "MYS": 0.25},
}
GENERIC_CORRIDORS = {"ARE": 0.25, "SAU": 0.20, "SGP": 0.15, "MYS": 0.15, "AUS": 0.15, "JPN": 0.10}

# Where immigrants and inbound roamers come from (their own SIM's country).
DEFAULT_ORIGINS = {
    "PHL": {"KOR": 0.30, "USA": 0.20, "CHN": 0.15, "JPN": 0.15, "AUS": 0.10, "QAT": 0.10},
    "NPL": {"IND": 0.50, "CHN": 0.30, "USA": 0.10, "QAT": 0.10},
    "IDN": {"MYS": 0.25, "SGP": 0.20, "AUS": 0.20, "CHN": 0.20, "SAU": 0.15},
    "MMR": {"THA": 0.40, "CHN": 0.40, "IND": 0.20},
}
GENERIC_ORIGINS = {"CHN": 0.30, "USA": 0.25, "IND": 0.25, "ARE": 0.20}

# ISO 4217 code, minor-unit digits, approximate units per USD (2024 order of magnitude; only
# used to draw plausible amounts). Validated against pycountry.currencies on use.
CURRENCIES = {
    "PHL": ("PHP", 2, 56.0), "NPL": ("NPR", 2, 133.0), "IDN": ("IDR", 2, 15800.0),
    "MMR": ("MMK", 2, 2100.0), "SAU": ("SAR", 2, 3.75), "ARE": ("AED", 2, 3.6725),
    "QAT": ("QAR", 2, 3.64), "KWT": ("KWD", 3, 0.307), "OMN": ("OMR", 3, 0.385),
    "BHR": ("BHD", 3, 0.376), "HKG": ("HKD", 2, 7.8), "SGP": ("SGD", 2, 1.34),
    "MYS": ("MYR", 2, 4.6), "TWN": ("TWD", 2, 32.0), "THA": ("THB", 2, 35.5),
    "JPN": ("JPY", 0, 150.0), "KOR": ("KRW", 0, 1360.0), "CHN": ("CNY", 2, 7.2),
    "IND": ("INR", 2, 83.5), "BGD": ("BDT", 2, 118.0), "LKA": ("LKR", 2, 300.0),
    "PAK": ("PKR", 2, 280.0), "VNM": ("VND", 0, 25000.0), "KHM": ("KHR", 2, 4100.0),
    "LAO": ("LAK", 2, 21000.0), "AUS": ("AUD", 2, 1.52), "NZL": ("NZD", 2, 1.65),
    "USA": ("USD", 2, 1.0), "CAN": ("CAD", 2, 1.37), "GBR": ("GBP", 2, 0.79),
}

# A country spanning several zones is simulated in one zone (its most populous).
TIME_ZONES = {"AUS": "Australia/Sydney", "USA": "America/New_York", "IDN": "Asia/Jakarta",
              "CHN": "Asia/Shanghai", "MYS": "Asia/Kuala_Lumpur", "CAN": "America/Toronto"}

# Relative activity per local hour 0..23: low before dawn, evening peak (our assumption).
HOURLY_PROFILE = (0.30, 0.20, 0.14, 0.10, 0.10, 0.16, 0.35, 0.65, 0.85, 0.95, 1.00, 1.00,
                  1.05, 1.00, 0.95, 0.95, 1.00, 1.10, 1.30, 1.55, 1.70, 1.65, 1.30, 0.75)
WEEKDAY_FACTOR = (0.97, 0.97, 0.98, 1.00, 1.05, 1.08, 0.95)  # Monday..Sunday
# A presence day runs from this local hour to the same hour next day: its night is 19:00-07:00.
DAY_START_HOUR = 7
ACTIVITY_SIGMA = 0.9  # lognormal spread of per-person event rates: a heavy upper tail
ABROAD_ACTIVITY = 0.5  # roaming is expensive: home SIMs are used less abroad
VISITOR_ACTIVITY = 0.7

EVENT_TYPE_SHARES = (0.18, 0.18, 0.12, 0.14, 0.38)  # in the order of mobility.schemas.EVENT_TYPES
COUNTERPART_MISSING = 0.08
CALL_MEDIAN_S, CALL_SIGMA, CALL_MAX_S = 60.0, 1.0, 7200
MSISDN_FORMAT_SHARES = (0.60, 0.30, 0.10)  # E.164, national compact, national spaced
TIME_FORMAT_SHARES = (0.85, 0.10, 0.05)  # naive home-local, explicit home offset, UTC "Z"
NIGHT_HOME_CELL = 0.85  # share of night-time events on the home cell


def currency_of(iso3: str) -> tuple[str, int, float]:
    """(ISO 4217 code, minor digits, units per USD) of a country, checked against pycountry."""
    if iso3 not in CURRENCIES:
        raise ConfigError(f"no currency known for country {iso3}", where="mobility.synth.params.CURRENCIES",
                          hint="add the country's ISO 4217 code, minor digits and rate per USD to the table")
    code, digits, per_usd = CURRENCIES[iso3]
    if pycountry.currencies.get(alpha_3=code) is None:
        raise ConfigError(f"{code} is not an ISO 4217 currency", where="mobility.synth.params.CURRENCIES")
    return code, digits, per_usd


def normalise_weights(weights: dict[str, float], what: str) -> dict[str, float]:
    """Positive weights summing to one, keys sorted so the draw order never depends on dict order."""
    if not weights:
        raise ConfigError(f"{what} is empty", hint="give at least one country with a positive weight")
    bad = {k: v for k, v in weights.items() if not (v >= 0)}
    total = float(sum(weights.values()))
    if bad or total <= 0:
        raise ConfigError(f"{what} needs non-negative weights with a positive sum (got {weights})")
    return {k: weights[k] / total for k in sorted(weights) if weights[k] > 0}


def corridors_for(home: str, corridors: dict[str, float] | None) -> dict[str, float]:
    chosen = corridors if corridors is not None else DEFAULT_CORRIDORS.get(home, GENERIC_CORRIDORS)
    chosen = {k.upper(): v for k, v in chosen.items() if k.upper() != home}
    return normalise_weights(chosen, "corridors")


def origins_for(home: str) -> dict[str, float]:
    chosen = {k: v for k, v in DEFAULT_ORIGINS.get(home, GENERIC_ORIGINS).items() if k != home}
    return normalise_weights(chosen, "origins")
