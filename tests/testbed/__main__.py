"""python3 -m tests.testbed up|down: the test bed's machines (cluster `testbed`).

Everything else is `labctl machines ... --cluster testbed` (status, ssh, stop, start).
"""

import argparse
import sys

from . import bed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.testbed", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="make and boot the bed's three machines (the base if needed)")
    sub.add_parser("down", help="destroy them: machines, bridge, rules, roots")
    a = ap.parse_args(argv)
    try:
        with bed.locked(what=f"testbed {a.cmd}"):
            if a.cmd == "up":
                print(bed.up())
            else:
                bed.down()
    except (bed.TestbedError, bed.manage.MachinesError) as e:
        print(f"testbed: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
