"""`python -m virtsnap`: the virsh-compatible command line."""

from virtsnap.cli.main import main

raise SystemExit(main())
