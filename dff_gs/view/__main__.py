import sys

from dff_gs.cli.view import main

sys.exit(main())
