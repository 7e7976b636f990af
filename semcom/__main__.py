import sys

from semcom.commands.cli import main

sys.exit(main())
