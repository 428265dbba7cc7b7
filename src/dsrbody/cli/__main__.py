import sys

from dsrbody.cli import main

sys.exit(main())
