"""The app as uvicorn's workers build it: configuration from the environment (``CCWEB_CONFIG``)."""

from __future__ import annotations

import os

from fastapi import FastAPI

from ccweb import logs
from ccweb.app import create_app
from ccweb.config import load_config
from ccweb.sessions import BotoSTS


def app_from_environment() -> FastAPI:
    logs.setup(os.environ.get("CCWEB_LOG_LEVEL", "info"), os.environ.get("CCWEB_LOG_FORMAT", "json"))
    config = load_config(os.environ["CCWEB_CONFIG"])
    return create_app(config, sts=BotoSTS(region=config.aws.region))
