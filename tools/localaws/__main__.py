"""python -m localaws serve [...]: see server.py."""

import sys

from .server import main

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] != "serve":
        print("usage: python -m localaws serve [--port N] [--state-dir DIR] [--ready-file FILE]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(args[1:]))
