"""The engine: the worker, the runner that replays an execution, the timer poller, the
scheduler, the queue gate and the worker's copy of the pause rules.

The engine never imports the client.
"""

from zart_es.engine._logs import configure_logging
from zart_es.engine._scheduler import Scheduler
from zart_es.engine._worker import Worker

__all__ = [
    "Scheduler",
    "Worker",
    "configure_logging",
]
