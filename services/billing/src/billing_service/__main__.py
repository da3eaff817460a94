"""``python -m billing_service``: run the billing service."""

from billing_service.app import create_app
from billing_service.settings import Settings
from common.service import load_settings, serve

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings, "billing")
