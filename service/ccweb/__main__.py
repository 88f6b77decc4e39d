import sys

from ccweb.cli import main

sys.exit(main())
