"""``python -m benchmarks``: the load benchmark suite of kaa-wire.

    python -m benchmarks run            # full: 3 runs, both implementations (~10 min)
    python -m benchmarks run --quick    # one short run, under a minute
    python -m benchmarks profile        # py-spy profile of the Operations server under load
    python -m benchmarks fleet --quick  # fleet-scale stores: 10k and 1M endpoints (< 10 min)
    python -m benchmarks storm          # the reconnect storm alone: 100,000 devices

``run`` starts the servers itself, measures the crypto and sign floors in the same run,
loads registrations and resolutions against the extension and the pure-Python server, and
writes benchmarks/results/latest.json and latest.png (see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.loadgen.keys import DEFAULT_KEYCACHE, KeyCache, PooledKeys

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the load suite; writes latest.json and latest.png")
    size = run.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="one short run (< 60 s)")
    size.add_argument("--smoke", action="store_true",
                      help="20 operations of each kind, for the test suite")
    run.add_argument("--runs", type=int, help="override the number of runs")
    run.add_argument("--out", type=Path, default=RESULTS, help="where latest.* go")
    run.add_argument("--keycache", type=Path, default=DEFAULT_KEYCACHE)
    run.add_argument("--implementations", default="ext,py",
                     help="comma-separated, the first is the headline (default ext,py)")
    run.add_argument("--procs", type=int, default=2, help="generator processes")
    run.add_argument("--no-plot", action="store_true")
    run.add_argument("--own-primes", action="store_true",
                     help="one generated RSA key per endpoint (default: prime-pool keys, "
                     "the same verify cost, ~250x fewer key generations)")
    run.add_argument("--wait-quiet", type=float, default=0.0, metavar="SECONDS",
                     help="first wait up to this long for the load average to fall below 0.5")
    prof = sub.add_parser("profile", help="profile a server under load (py-spy)")
    prof.add_argument("--service", default="operations", choices=("operations", "bootstrap"))
    prof.add_argument("--implementation", default="ext", choices=("ext", "py"))
    prof.add_argument("--concurrency", type=int, default=64)
    prof.add_argument("--seconds", type=float, default=8.0)
    prof.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    prof.add_argument("--max-rate", type=int, default=6000,
                      help="operations/s a window is sized for (keys needed: about this x "
                           "--seconds; a lower figure ends a window at its count)")
    prof.add_argument("--out", type=Path, default=RESULTS / "profile")
    prof.add_argument("--keycache", type=Path, default=DEFAULT_KEYCACHE)
    fleet = sub.add_parser("fleet", help="registrations against fleet-sized stores")
    fleet_size = fleet.add_mutually_exclusive_group()
    fleet_size.add_argument("--quick", action="store_true", help="10k and 1M endpoints (< 10 min)")
    fleet_size.add_argument("--smoke", action="store_true",
                            help="400 endpoints, 40 operations, for the test suite")
    fleet.add_argument("--sizes", help="comma-separated store sizes, instead of the plan's")
    fleet.add_argument("--data", type=Path, default=Path("/tmp/kaa-fleet"),
                       help="where the filled stores live (reused by later runs; never git)")
    fleet.add_argument("--postgres", metavar="DSN",
                       help="also measure a PostgreSQL store at the plan's sizes (full: 1M)")
    fleet.add_argument("--postgres-sizes", help="comma-separated, instead of the plan's")
    fleet.add_argument("--storm-devices", type=int, help="instead of the plan's 100,000")
    fleet.add_argument("--no-storm", action="store_true")
    fleet.add_argument("--out", type=Path, default=RESULTS)
    fleet.add_argument("--keycache", type=Path, default=DEFAULT_KEYCACHE)
    fleet.add_argument("--no-plot", action="store_true")
    storm = sub.add_parser("storm", help="the reconnect storm alone, into fleet.json's storm")
    storm.add_argument("--quick", action="store_true", help="the quick plan's 10,000 devices")
    storm.add_argument("--devices", type=int, help="instead of the plan's (full: 100,000)")
    storm.add_argument("--holdoff", type=float, help="the devices' initial hold-off, seconds")
    storm.add_argument("--bound", type=float, help="stop after this many seconds")
    storm.add_argument("--procs", type=int, default=2, help="generator processes")
    storm.add_argument("--data", type=Path, default=Path("/tmp/kaa-fleet"),
                       help="where the filled store lives (reused by later runs; never git)")
    storm.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])

    if args.command in ("fleet", "storm"):
        import signal

        # A SIGTERM ends the run through its finally blocks: servers and generator processes
        # stopped, no sockets left behind.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.command == "fleet":
        import dataclasses

        from benchmarks.fleet import run as fleet_run

        fplan = fleet_run.SMOKE if args.smoke else fleet_run.QUICK if args.quick else fleet_run.FULL
        if args.storm_devices:
            fplan = dataclasses.replace(fplan, storm_devices=args.storm_devices)
        if args.postgres_sizes:
            sizes = tuple(int(s) for s in args.postgres_sizes.split(","))
            fplan = dataclasses.replace(fplan, postgres_sizes=sizes)
        fleet_run.run_fleet(
            fplan, out_dir=args.out, data_root=args.data, keycache=args.keycache,
            postgres_dsn=args.postgres, storm=not args.no_storm, plot=not args.no_plot,
            sizes=tuple(int(s) for s in args.sizes.split(",")) if args.sizes else None,
            command=command.strip(),
        )  # fmt: skip
        return 0

    if args.command == "storm":
        import dataclasses

        from benchmarks.fleet import run as fleet_run

        splan = fleet_run.QUICK if args.quick else fleet_run.FULL
        splan = dataclasses.replace(
            splan,
            storm_devices=args.devices or splan.storm_devices,
            storm_holdoff_s=splan.storm_holdoff_s if args.holdoff is None else args.holdoff,
            storm_bound_s=args.bound or splan.storm_bound_s,
        )
        section = fleet_run.run_storm_only(
            splan, out_dir=args.out, data_root=args.data, procs=args.procs,
            command=command.strip(),
        )  # fmt: skip
        if "refused" in section:
            return 3
        return 0 if section["registered"] == section["devices"] else 1

    if args.command == "profile":
        from benchmarks.loadgen.profile import profile_service

        profile_service(
            service=args.service, implementation=args.implementation,
            concurrency=args.concurrency,
            seconds=args.seconds, rate=args.rate, out_dir=args.out,
            keycache=PooledKeys(KeyCache(args.keycache)), max_rate=args.max_rate,
        )  # fmt: skip
        return 0

    import dataclasses

    from benchmarks.loadgen import suite

    plan = suite.SMOKE if args.smoke else suite.QUICK if args.quick else suite.FULL
    if args.runs:
        plan = dataclasses.replace(plan, runs=args.runs)
    if args.wait_quiet:
        suite.wait_quiet(0.5, args.wait_quiet)
    cache = KeyCache(args.keycache)
    keys = cache if args.own_primes else PooledKeys(cache)
    result = suite.run_suite(
        plan,
        out_dir=args.out,
        keycache=keys,
        implementations=tuple(args.implementations.split(",")),
        procs=args.procs,
        plot=not args.no_plot,
        command=command.strip(),
    )
    return 0 if all(
        impl["stats"]["errors"]["max"] == 0 for impl in result["implementations"].values()
    ) else 1


if __name__ == "__main__":
    sys.exit(main())
