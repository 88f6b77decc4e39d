import sys

from ccweb_helper.cli import main

sys.exit(main())
