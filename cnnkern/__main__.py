"""``python -m cnnkern``: the ``cnnkern`` command (:func:`cnnkern.cli.main`)."""

import sys

from .cli import main

sys.exit(main())
