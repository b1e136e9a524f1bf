"""What every core handler needs, passed in once: settings, store, storage, queue, locks, selfie status and checks."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bot.core.heartbeats import Heartbeats
from bot.core.locks import UserLocks
from bot.core.quotas import Quotas
from bot.core.selfie_checks import SelfieChecks
from bot.core.status import SelfieStatus
from bot.store.database import Store
from jobs.contract.queue import JobQueue
from jobs.settings import Settings
from jobs.storage import BlobStorage

__all__ = ["CoreContext"]


@dataclass
class CoreContext:
    settings: Settings
    store: Store
    storage: BlobStorage
    queue: JobQueue
    locks: UserLocks = field(default_factory=UserLocks)
    selfie_status: SelfieStatus = field(default_factory=SelfieStatus)
    selfie_checks: SelfieChecks = field(init=False)
    heartbeats: Heartbeats = field(default_factory=Heartbeats)
    clock: Callable[[], float] = time.time  # what "today" is for quotas; tests move it to the next day
    quotas: Quotas = field(init=False)

    def __post_init__(self) -> None:
        self.selfie_checks = SelfieChecks(self.settings.selfie_check_processes)
        self.quotas = Quotas(self.settings, self.store, lambda: self.clock())
