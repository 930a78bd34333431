"""An ansible-playbook callback for the tests: every task's result per host, and the recap, as one JSON document
on stdout (ansible-core 2.19 ships no json callback; ansible.posix's is a separate collection)."""

from __future__ import annotations

import json
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: results_json
type: stdout
short_description: every task result and the recap as one JSON document (tests only)
description: [every task result and the recap as one JSON document (tests only)]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "results_json"

    def __init__(self) -> None:
        super().__init__()
        self.tasks: list[dict[str, Any]] = []

    def v2_playbook_on_task_start(self, task: Any, is_conditional: bool) -> None:
        self.tasks.append({"task": task.get_name(), "hosts": {}})

    def _record(self, result: Any, **extra: Any) -> None:
        self.tasks[-1]["hosts"][result._host.get_name()] = {**result._result, **extra}

    def v2_runner_on_ok(self, result: Any, **kwargs: Any) -> None:
        self._record(result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._record(result, failed=True)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._record(result, unreachable=True)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        recap = {host: stats.summarize(host) for host in sorted(stats.processed)}
        self._display.display(json.dumps({"plays": [{"tasks": self.tasks}], "stats": recap}, default=str))
