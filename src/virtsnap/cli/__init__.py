"""virtsnap's virsh-compatible command line: `virtsnap [-c URI] [-q] [-r] COMMAND...`.

parser (grammar and option tables), control (per-run state and output), table (vshTable, tree),
cmd_* (the commands), registry (command groups), main (global options, chain runner, entry point).
"""
