"""python -m woe_anchor_harness {demo,server,install,test-major}"""
import argparse
import sys

from . import demo, install, roots, server


def main(argv=None):
    parser = argparse.ArgumentParser(prog="woe_anchor_harness")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="set up a server if needed, install, generate data, fit")
    d.add_argument("--rows", type=int, default=300_000)
    sub.add_parser("server", help="create/start the local cluster and print its DSN")
    sub.add_parser("install", help="make install into the local server")
    t = sub.add_parser("test-major", help="the whole suite on another major, its server in a root of a release that ships it")
    t.add_argument("major", type=int, choices=sorted(roots.RELEASES))
    args, rest = parser.parse_known_args(argv)
    if args.command == "test-major":
        sys.exit(roots.test_major(args.major, rest))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "demo":
        demo.run(rows=args.rows)
    elif args.command == "server":
        print(server.from_env_or_local().dsn)
    elif args.command == "install":
        install.make_install(server.from_env_or_local())


if __name__ == "__main__":
    main()
