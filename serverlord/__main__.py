import sys

from serverlord.cli import main

sys.exit(main())
