"""`dse.sim.heap`: with freed memory kept, allocating the same large block again faults no pages in."""

import subprocess
import sys

import pytest

SCRIPT = """
import resource, sys
import numpy as np
from dse.sim.heap import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(16):
    a = np.ones(2**24, np.float32)  # 64 MB, touched
    del a
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt and the kernel's fault count")
def test_kept_memory_is_reused_without_page_faults():
    faults = {mode: int(subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True,
                                       check=True).stdout) for mode in ("keep", "default")}
    # by default each new block is faulted in again (the kernel maps several pages per fault); kept, the
    # first block's pages are reused
    assert faults["keep"] * 3 <= faults["default"], faults
