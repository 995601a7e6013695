"""Progress of a sparse write counts work, not disk: a 64 GiB disk with 2 GiB of data is 2 GiB of work."""

from __future__ import annotations

from app.luks.relaid_image import _WorkProgress
from app.progress import ProgressState

GiB = 1 << 30
MiB = 1 << 20


def test_the_write_progress_of_a_mostly_clear_disk_is_that_of_its_data() -> None:
    # Data at 0-1 GiB and 40-41 GiB of a 64 GiB disk; write_image reports its position on the disk.
    ranges = [(0, GiB), (40 * GiB, GiB)]
    state = ProgressState()
    work = _WorkProgress(state, "Writing the template", lambda: iter(ranges), 2 * GiB)
    work.begin("Writing raw", 64 * GiB)
    assert (state.step, state.total) == ("Writing the template", 2 * GiB)
    seen = []
    for position in (512 * MiB, GiB, 20 * GiB, 40 * GiB, 40 * GiB + 256 * MiB, 41 * GiB, 64 * GiB):
        work.update(position)
        seen.append(state.done)
    assert seen == [512 * MiB, GiB, GiB, GiB, GiB + 256 * MiB, 2 * GiB, 2 * GiB]  # the hole costs nothing
    assert seen == sorted(seen)
