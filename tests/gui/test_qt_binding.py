"""Guard for the pinned Qt binding: void calls and signal emits must not leak or steal references.

PySide6 6.12.0 on CPython 3.11 drops a reference to None on every void call and to True on every
emit, aborting the interpreter after a few thousand calls. Run in a subprocess so a regression
fails this test instead of killing the whole test session.
"""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys
from PySide6.QtCore import QCoreApplication, QObject, Signal
app = QCoreApplication([])
class O(QObject):
    s = Signal(int)
o = O()
n0, t0 = sys.getrefcount(None), sys.getrefcount(True)
for _ in range(20000):
    o.setObjectName("x")
    o.s.emit(1)
print(sys.getrefcount(None) - n0, sys.getrefcount(True) - t0)
"""


def test_void_calls_and_emits_keep_refcounts_balanced() -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-500:]
    none_delta, true_delta = (int(x) for x in proc.stdout.split())
    assert abs(none_delta) < 100 and abs(true_delta) < 100
