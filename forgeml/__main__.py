import sys

from forgeml.cli import main

sys.exit(main())
