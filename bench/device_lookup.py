"""Finding a user's device by the name in each device's own status record, as `fedkb keyboard --user` does.

Device ids are random and the population index holds no names, so the keyboard (and
``fedkb device delete --user``, ``fedkb population seed --append``) reads the ``user`` entry of
every device's status record. This seeds the bundled corpus (one device per role; no tokenizer,
no TensorFlow) into a fresh home and times ``keyboard.store.devices_of_users`` over all of them.

    uv run python bench/device_lookup.py [--repeats 5] [--work DIR]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from fedbench import DEFAULT_WORK, emit, median  # first: repo on sys.path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed scans (default 5)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK / "device-lookup")
    args = parser.parse_args(argv)

    from common.layout import Home
    from federated.corpus import resolve_corpus
    from federated.population import members, seed
    from keyboard.store import devices_of_users

    home = Home(args.work / "home")
    shutil.rmtree(home.root, ignore_errors=True)
    started = time.perf_counter()
    seed(home, resolve_corpus("shakespeare"), min_sentences=10)
    seed_s = time.perf_counter() - started
    devices = len(members(home))
    times = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        found = devices_of_users(home.devices)
        times.append(time.perf_counter() - started)
    assert len(found) == devices, (len(found), devices)
    shutil.rmtree(home.root, ignore_errors=True)
    print(f"{devices} devices seeded in {seed_s:.1f} s; finding every user's device from the status records: "
          f"median {1000 * median(times):.0f} ms, max {1000 * max(times):.0f} ms over {args.repeats} scans")
    emit({"bench": "device_lookup", "devices": devices, "scan_median_ms": round(1000 * median(times), 1),
          "scan_max_ms": round(1000 * max(times), 1), "repeats": args.repeats, "seed_s": round(seed_s, 1)})


if __name__ == "__main__":
    main()
