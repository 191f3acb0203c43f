"""Process-level tuning for `incidentbot run`."""

from __future__ import annotations

import gc

# Full (generation 2) collections stop the event loop for as long as they take to walk every
# tracked object; with SDK models, pydantic schemas and playbooks loaded that is tens of ms.
# After start-up those objects live for the whole process, so move them out of the collector's
# reach (gc.freeze) and collect young objects a little less eagerly.
GC_THRESHOLDS = (50_000, 20, 100)


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
