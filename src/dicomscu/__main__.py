"""``python -m dicomscu`` is the same as the ``dicomscu`` command."""

import sys

from dicomscu.app import main

sys.exit(main())
