"""``python -m console_service``: run the web console."""

from console_service.app import create_app
from console_service.serve import load_settings, serve

if __name__ == "__main__":
    settings = load_settings()
    serve(create_app(settings), settings)
