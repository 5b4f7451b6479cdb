"""Filters and transforms: CEL expressions over an event, checked in the daemon and evaluated
in a sandbox process that has bounds on time, memory and output."""

import sys
import types

# The cel package imports its own command-line tool, and with it prompt_toolkit: about a second
# and 24 MB in every process that imports cel (the daemon and each sandbox process), for
# nothing tillhook uses. An empty module in its place leaves the interpreter untouched.
if "cel" not in sys.modules:
    sys.modules.setdefault("cel.cli", types.ModuleType("cel.cli"))
