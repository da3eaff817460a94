"""``python -m trigger_router_service``: run the trigger-router service."""

from common.service import load_settings, serve
from trigger_router_service.app import create_app
from trigger_router_service.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings, "trigger-router")
