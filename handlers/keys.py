"""Typed application keys shared by the app factory and the handlers."""

from __future__ import annotations

from aiohttp import web

from handlers.event_hub import EventHub
from handlers.metrics_registry import Metrics
from handlers.ready_probe import ReadyProbe
from handlers.request_lines import RequestLines
from plumbing.settings import Settings
from storage.database import Database
from storage.readers import ReaderPool
from storage.writer import Writer

SETTINGS = web.AppKey("settings", Settings)
WRITER = web.AppKey("writer", Writer)
READERS = web.AppKey("readers", ReaderPool)
DATABASE = web.AppKey("database", Database)
METRICS = web.AppKey("metrics", Metrics)
EVENTS = web.AppKey("events", EventHub)
READY_PROBE = web.AppKey("ready_probe", ReadyProbe)
REQUEST_LINES = web.AppKey("request_lines", RequestLines)
