"""The ``modelserve`` command: ``serve`` the repository, ``publish`` a saved model,
``train`` a built-in model, or ``compare`` two versions on a running server."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="modelserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the model repository over HTTP", add_help=False)
    sub.add_parser("publish", help="publish a saved scikit-learn or Keras model as a new "
                                   "version", add_help=False)
    sub.add_parser("train", help="train a built-in model and publish a new version",
                   add_help=False)
    sub.add_parser("compare", help="compare two versions of a model on a running server",
                   add_help=False)
    args, _rest = parser.parse_known_args(argv[:1])
    if args.command == "compare":
        from service.evidence.compare_cli import main as compare_main

        compare_main(argv[1:])
    elif args.command == "train":
        from training.cli import main as train_main

        train_main(argv[1:])
    elif args.command == "publish":
        from training.publishing.cli import main as publish_main

        publish_main(argv[1:])
    else:
        from service import startup

        startup.begin()  # before the server's imports
        from service.server import main as serve_main

        serve_main(argv[1:])


if __name__ == "__main__":
    main()
