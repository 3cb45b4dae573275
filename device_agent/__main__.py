import sys

from device_agent.cli.main import main

sys.exit(main())
