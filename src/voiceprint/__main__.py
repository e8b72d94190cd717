"""``python -m voiceprint`` runs the CLI."""

import sys

from voiceprint.cli import main

sys.exit(main())
