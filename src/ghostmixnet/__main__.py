"""``python -m ghostmixnet`` (also what ``torchrun -m ghostmixnet`` runs)."""

import sys

from .cli import main

sys.exit(main())
