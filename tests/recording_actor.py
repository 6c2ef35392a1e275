"""A stand-in for a Ray actor handle, for Ray-free tests of the exchanges and the fan-out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def method_index_and_args(method: str, index: int, args: tuple) -> tuple:
    return (method, index, args)


class RecordingActor:
    """``actor.method.remote(*args)`` is logged as ``(index, method, args)`` and answers
    ``answer(method, index, args)`` (by default that triple: a labelled reference)."""

    def __init__(self, index: int, log: list, answer: Callable[[str, int, tuple], Any] = method_index_and_args) -> None:
        self.index, self.log, self.answer = index, log, answer

    def __getattr__(self, method: str):
        actor = self

        class Method:
            @staticmethod
            def remote(*args):
                actor.log.append((actor.index, method, args))
                return actor.answer(method, actor.index, args)
        return Method
