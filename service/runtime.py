"""The running service's resources, opened and closed together by the app's lifespan."""

from __future__ import annotations

import logging

import aiohttp

from service import http
from service.config import Config, seconds
from service.engine import Engine
from service.metrics import Metrics
from service.sqlite_store import SQLiteStore
from service.store import Store
from service.upstream import UpstreamClient
from service.worker import Workers

log = logging.getLogger("taskhook")


class Runtime:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store: Store = store or SQLiteStore(config.database_path)
        self.metrics = Metrics()
        self.stopping = False
        self.session: aiohttp.ClientSession | None = None
        self.engine: Engine
        self.upstream: UpstreamClient
        self.workers: Workers

    async def start(self) -> None:
        await self.store.open()
        self.session = http.new_session()
        self.upstream = UpstreamClient(
            self.config.upstream.base_url,
            self.config.upstream.api_key,
            self.session,
            timeout=seconds(self.config.upstream.timeout),
        )
        self.engine = Engine(self.config, self.store, self.upstream, self.session, self.metrics)
        self.workers = Workers(self.engine)
        await self.workers.start()
        log.info(
            "taskhook ready: %d rule(s), storage %s",
            len(self.config.rules),
            self.config.database_path,
        )

    async def stop(self) -> None:
        self.stopping = True
        if hasattr(self, "workers"):
            await self.workers.stop()
        if hasattr(self, "engine"):
            await self.engine.services.aclose()
        if self.session is not None:
            await self.session.close()
        await self.store.close()
