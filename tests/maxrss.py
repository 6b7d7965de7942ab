"""Run a command and note the peak resident memory of its process tree.

`python -m tests.maxrss FILE COMMAND...` runs COMMAND with this process's standard streams,
then writes to FILE the largest peak RSS, in KiB, of any process of the tree that was waited
for (Linux `ru_maxrss` of RUSAGE_CHILDREN), and exits with COMMAND's status.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from pathlib import Path

if __name__ == "__main__":
    status = subprocess.call(sys.argv[2:])
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    Path(sys.argv[1]).write_text(f"{peak}\n", encoding="ascii")
    sys.exit(status)
