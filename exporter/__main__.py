"""`python -m exporter`: the same as the `infobip-voice-exporter` command."""

import sys

from exporter.cli import main

sys.exit(main())
