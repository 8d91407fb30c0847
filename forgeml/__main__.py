import sys

from forgeml.cli.app import main

sys.exit(main())
