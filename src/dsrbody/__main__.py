"""``python -m dsrbody``: the ``dsrbody`` command without the console script."""

import sys

from dsrbody.cli import main

if __name__ == "__main__":
    sys.exit(main())
