import sys

from mcuformer.cli import main

sys.exit(main())
