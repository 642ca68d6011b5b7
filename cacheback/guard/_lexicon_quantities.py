"""Words for the values a question pins down: dates, units, currencies, counts."""

from __future__ import annotations

_MONTHS = {
    "january": "jan", "february": "feb", "march": "mar", "april": "apr", "may": "may",
    "june": "jun", "july": "jul", "august": "aug", "september": "sep", "october": "oct",
    "november": "nov", "december": "dec", "jan": "jan", "feb": "feb", "mar": "mar",
    "apr": "apr", "jun": "jun", "jul": "jul", "aug": "aug", "sep": "sep", "sept": "sep",
    "oct": "oct", "nov": "nov", "dec": "dec",
}
# Month names that are also ordinary words count only when capitalised or next to a number.
_AMBIGUOUS_MONTHS = frozenset({"march", "may", "august", "jan", "mar", "apr", "jun", "jul",
                               "aug", "sep", "oct", "nov", "dec"})
_WEEKDAYS = {
    "monday": "mon", "tuesday": "tue", "wednesday": "wed", "thursday": "thu",
    "friday": "fri", "saturday": "sat", "sunday": "sun", "mondays": "mon",
    "tuesdays": "tue", "wednesdays": "wed", "thursdays": "thu", "fridays": "fri",
    "saturdays": "sat", "sundays": "sun",
}
_RELATIVE_DAYS = {
    "today": "today", "tonight": "tonight", "tomorrow": "tomorrow", "yesterday": "yesterday",
    "tmrw": "tomorrow", "tmr": "tomorrow", "weekend": "weekend",
}
_PERIODS = frozenset({"week", "month", "year", "weekend", "quarter", "decade", "century",
                      "night", "morning", "summer", "winter", "season", "semester"})
_PERIOD_QUALIFIERS = {"next": "next", "last": "last", "this": "this", "previous": "last",
                      "coming": "next", "past": "last", "upcoming": "next"}

# Canonical units. Single letters and other ambiguous spellings only count after a number.
_UNITS = {
    "km": "km", "kms": "km", "kilometer": "km", "kilometers": "km", "kilometre": "km",
    "kilometres": "km", "mile": "mile", "miles": "mile", "mi": "mile", "meter": "m",
    "meters": "m", "metre": "m", "metres": "m", "cm": "cm", "centimeter": "cm",
    "centimeters": "cm", "centimetre": "cm", "centimetres": "cm", "mm": "mm",
    "millimeter": "mm", "millimeters": "mm", "foot": "ft", "feet": "ft", "ft": "ft",
    "inch": "inch", "inches": "inch", "yard": "yard", "yards": "yard", "yd": "yard",
    "kg": "kg", "kgs": "kg", "kilogram": "kg", "kilograms": "kg", "kilo": "kg", "kilos": "kg",
    "gram": "g", "grams": "g", "gramme": "g", "mg": "mg", "milligram": "mg",
    "milligrams": "mg", "lb": "lb", "lbs": "lb", "pound": "lb", "pounds": "lb", "ounce": "oz",
    "ounces": "oz", "oz": "oz", "ton": "ton", "tons": "ton", "tonne": "ton", "tonnes": "ton",
    "stone": "stone", "liter": "l", "liters": "l", "litre": "l", "litres": "l", "ml": "ml",
    "milliliter": "ml", "milliliters": "ml", "millilitre": "ml", "gallon": "gal",
    "gallons": "gal", "gal": "gal", "pint": "pint", "pints": "pint", "quart": "quart",
    "quarts": "quart", "cup": "cup", "cups": "cup", "tablespoon": "tbsp",
    "tablespoons": "tbsp", "tbsp": "tbsp", "teaspoon": "tsp", "teaspoons": "tsp",
    "tsp": "tsp", "celsius": "degc", "centigrade": "degc", "°c": "degc",
    "fahrenheit": "degf", "°f": "degf", "kelvin": "kelvin", "mph": "mph", "kph": "kmh",
    "km/h": "kmh", "kmh": "kmh", "knot": "knot", "knots": "knot", "acre": "acre",
    "acres": "acre", "hectare": "hectare", "hectares": "hectare", "sqft": "sqft",
    "byte": "byte", "bytes": "byte", "kb": "kb", "kilobyte": "kb", "kilobytes": "kb",
    "mb": "mb", "megabyte": "mb", "megabytes": "mb", "gb": "gb", "gigabyte": "gb",
    "gigabytes": "gb", "tb": "tb", "terabyte": "tb", "terabytes": "tb", "kib": "kib",
    "mib": "mib", "gib": "gib", "bit": "bit", "bits": "bit", "mbps": "mbps", "gbps": "gbps",
    "ghz": "ghz", "mhz": "mhz", "hz": "hz", "watt": "w", "watts": "w", "kw": "kw",
    "kwh": "kwh", "volt": "v", "volts": "v", "amp": "a", "amps": "a", "calorie": "kcal",
    "calories": "kcal", "kcal": "kcal", "joule": "j", "joules": "j", "psi": "psi",
    "second": "sec", "seconds": "sec", "sec": "sec", "secs": "sec", "minute": "min",
    "minutes": "min", "mins": "min", "hour": "hour", "hours": "hour", "hr": "hour",
    "hrs": "hour", "day": "day", "days": "day", "week": "week", "weeks": "week",
    "month": "month", "months": "month", "year": "year", "years": "year", "yr": "year",
    "yrs": "year", "ms": "ms", "millisecond": "ms", "milliseconds": "ms", "percent": "pct",
    "%": "pct", "degree": "deg", "degrees": "deg", "radian": "rad", "radians": "rad",
}
_UNIT_AFTER_NUMBER_ONLY = frozenset({
    "m", "g", "l", "c", "f", "k", "s", "h", "min", "sec", "ms", "mi", "gal", "oz", "yd",
    "ton", "tons", "stone", "cup", "cups", "second", "day", "days", "week", "weeks",
    "month", "months", "year", "years", "hour", "hours", "minute", "minutes", "pound",
    "pounds", "degree", "degrees", "bit", "bits", "hr", "yr", "v", "a", "w",
})
_SINGLE_LETTER_UNITS = {"m": "m", "g": "g", "l": "l", "c": "degc", "f": "degf", "s": "sec",
                        "h": "hour"}
# Durations are units too, but a question without one ("how long") is the same question
# with one ("how many days"): only a substitution of them is a difference.
_DURATIONS = frozenset({"sec", "min", "hour", "day", "week", "month", "year", "ms"})

_CURRENCY_SYMBOLS = {"$": "usd", "€": "eur", "£": "gbp", "¥": "jpy", "₹": "inr", "₩": "krw",
                     "₽": "rub", "₿": "btc"}
_CURRENCIES = {
    "usd": "usd", "dollar": "usd", "dollars": "usd", "eur": "eur", "euro": "eur",
    "euros": "eur", "gbp": "gbp", "sterling": "gbp", "jpy": "jpy", "yen": "jpy",
    "inr": "inr", "rupee": "inr", "rupees": "inr", "rs": "inr", "cny": "cny", "rmb": "cny",
    "yuan": "cny", "renminbi": "cny", "cad": "cad", "aud": "aud", "chf": "chf",
    "franc": "chf", "francs": "chf", "btc": "btc", "bitcoin": "btc", "bitcoins": "btc",
    "eth": "eth", "ether": "eth", "ethereum": "eth", "krw": "krw", "won": "krw",
    "rub": "rub", "ruble": "rub", "rubles": "rub", "rouble": "rub", "roubles": "rub",
    "mxn": "mxn", "peso": "mxn", "pesos": "mxn", "brl": "brl", "real": "brl", "reais": "brl",
    "sek": "sek", "nok": "nok", "dkk": "dkk", "krona": "sek", "krone": "nok", "pln": "pln",
    "zloty": "pln", "try": "try", "lira": "try", "zar": "zar", "rand": "zar", "sgd": "sgd",
    "hkd": "hkd", "nzd": "nzd", "aed": "aed", "dirham": "aed", "dirhams": "aed",
    "usdt": "usdt", "usdc": "usdc", "doge": "doge", "dogecoin": "doge", "sol": "sol",
}
# Currency words that are ordinary words in most sentences: only after a number or with a
# currency context word.
_AMBIGUOUS_CURRENCIES = frozenset({"real", "won", "try", "sol", "rand", "rs", "ether",
                                   "franc", "francs"})
# "Canadian dollar" is not "US dollar"; "pound" is money only with a money word nearby.
_CURRENCY_QUALIFIERS = {"canadian": "cad", "australian": "aud", "singapore": "sgd",
                        "hong": "hkd", "new": "nzd", "zealand": "nzd", "us": "usd",
                        "american": "usd", "british": "gbp", "mexican": "mxn",
                        "swiss": "chf", "indian": "inr", "japanese": "jpy",
                        "chinese": "cny", "brazilian": "brl", "turkish": "try",
                        "russian": "rub", "korean": "krw"}

_NUMBER_WORDS = {
    "zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40",
    "fifty": "50", "sixty": "60", "seventy": "70", "eighty": "80", "ninety": "90",
    "hundred": "100", "thousand": "1000", "million": "1e6", "billion": "1e9",
    "trillion": "1e12", "twenties": "20s", "thirties": "30s", "forties": "40s",
    "fifties": "50s", "sixties": "60s", "seventies": "70s", "eighties": "80s",
    "nineties": "90s", "half": "0.5", "quarter": "0.25", "dozen": "12", "twice": "x2",
    "double": "x2", "triple": "x3", "once": "x1", "thrice": "x3", "single": "1",
}
_ORDINAL_WORDS = {
    "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5", "sixth": "6",
    "seventh": "7", "eighth": "8", "ninth": "9", "tenth": "10", "eleventh": "11",
    "twelfth": "12", "twentieth": "20", "hundredth": "100",
}

_MAGNITUDES = {"hundred": 1e2, "thousand": 1e3, "million": 1e6, "billion": 1e9,
               "trillion": 1e12, "k": 1e3, "m": 1e6, "bn": 1e9, "b": 1e9}
