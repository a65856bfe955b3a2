import sys

try:  # a Ctrl-C while the CLI's modules load is one line too (main() covers the rest)
    from .cli import main
except KeyboardInterrupt:
    print("edgemm: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
