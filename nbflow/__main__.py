"""``python -m nbflow``: the ``nbflow`` command (``run`` and ``resume`` reach a daemon if one serves)."""

import sys

from nbflow.launch import main

sys.exit(main())
