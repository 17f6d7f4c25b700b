import sys

from billing_app.cli import main

sys.exit(main())
