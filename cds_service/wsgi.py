"""WSGI entry point for running under another server: `gunicorn cds_service.wsgi:app`."""

from cds_service.app import check_store, create_app, prepare_store
from cds_service.config import Settings
from cds_service.logs import configure_logging

_settings = Settings.from_env()
configure_logging(_settings.log_level, _settings.log_format)
check_store(_settings)
app = create_app(_settings)
prepare_store(app)
