"""``zart-es demo``: the story of a durable execution, told on an embedded Redis.
"""

from zart_es.demo._demo import run_demo

__all__ = [
    "run_demo",
]
