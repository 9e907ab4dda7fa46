"""Qt-free application layer: the recording pipeline, the session service and the read model.

Everything a window, ``vigil record``, the clinic-board publisher or the replication worker needs
from a running chair goes through here (see docs/architecture.md).
"""
