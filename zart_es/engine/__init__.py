"""The engine: the worker, the runner that replays an execution, the timer poller, the
scheduler, the archiver, the queue gate and the worker's copy of the pause rules.

The engine never imports the client.
"""

from zart_es.engine._aio import LoopFinding, Supervisor
from zart_es.engine._archiver import BATCH_WAIT_MS, Archiver, seal_interval
from zart_es.engine._heartbeat import read_heartbeat, write_heartbeat
from zart_es.engine._logs import configure_logging
from zart_es.engine._metrics import WorkerMetrics
from zart_es.engine._pause_rules import PauseRules
from zart_es.engine._queries import QueryServer
from zart_es.engine._queue_gate import QueueGate
from zart_es.engine._runner import StoreJournal, drive_execution
from zart_es.engine._scheduler import Scheduler
from zart_es.engine._timers import TimerPoller
from zart_es.engine._worker import Worker

__all__ = [
    "BATCH_WAIT_MS",
    "Archiver",
    "LoopFinding",
    "PauseRules",
    "QueryServer",
    "QueueGate",
    "Scheduler",
    "StoreJournal",
    "Supervisor",
    "TimerPoller",
    "Worker",
    "WorkerMetrics",
    "configure_logging",
    "drive_execution",
    "read_heartbeat",
    "seal_interval",
    "write_heartbeat",
]
