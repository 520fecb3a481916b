"""Coordination around the documents: the deadline clock and the worklists.

``deadlines.refresh_deadlines`` judges every open deadline Task against today (a ``Clock``),
marks the overdue ones and notifies each Task's owner once; the gateway's worker runs it on a
schedule and ``brobygger deadlines refresh`` runs it once. ``worklist`` is the CLI's view of a
participant's open Tasks through its own guarded data path.
"""

from gateway.coordination.deadlines import (
    RefreshReport,
    notification_id,
    refresh_deadlines,
    start_deadline_worker,
)

__all__ = ["RefreshReport", "notification_id", "refresh_deadlines", "start_deadline_worker"]
