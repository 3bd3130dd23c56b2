"""python3 -m tests.testbed up|down|status|start|stop|restart|reboot HOST|ssh HOST CMD"""

import argparse
import contextlib
import sys

from . import bed


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m tests.testbed", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("up", help="build the base if needed, boot the three hosts, write lab.yaml")
    d = sub.add_parser("down", help="stop the hosts and proxy, remove the bridge and host roots")
    d.add_argument(
        "--keep-roots",
        action="store_true",
        help="keep the hosts' root file systems (their state survives)",
    )
    sub.add_parser("status", help="what runs")
    sub.add_parser("rebuild-base", help="build the base again even if cached")
    for name, helptext in (
        ("start", "boot a stopped host"),
        ("stop", "power a host off"),
        ("restart", "stop then start a host"),
        ("reboot", "reboot a host from inside (systemctl reboot)"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("host", choices=sorted(bed.BY_NAME))
        if name in ("stop", "restart"):
            p.add_argument("--hard", action="store_true", help="pull the plug (SIGKILL)")
    s = sub.add_parser("ssh", help="run a command as root on a host")
    s.add_argument("host", choices=sorted(bed.BY_NAME))
    s.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    try:
        lock = (
            contextlib.nullcontext()
            if a.cmd in ("status", "ssh")
            else bed.locked(what=f"testbed {a.cmd}")
        )
        with lock:
            if a.cmd == "up":
                print(bed.up())
            elif a.cmd == "down":
                bed.down(keep_roots=a.keep_roots)
            elif a.cmd == "status":
                for k, v in bed.status().items():
                    print(f"{k:8} {v}")
            elif a.cmd == "rebuild-base":
                bed.ensure_base(force=True)
            elif a.cmd == "start":
                bed.start_host(a.host)
            elif a.cmd == "stop":
                bed.stop_host(a.host, hard=a.hard)
            elif a.cmd == "restart":
                bed.stop_host(a.host, hard=a.hard)
                bed.start_host(a.host)
            elif a.cmd == "reboot":
                bed.reboot_host(a.host)
            elif a.cmd == "ssh":
                rc, out, err = bed.ssh(a.host, " ".join(a.command) or "true")
                sys.stdout.write(out)
                sys.stderr.write(err)
                return rc
    except bed.TestbedError as e:
        print(f"testbed: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
