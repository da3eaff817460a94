"""``python -m model_serving_service``: run the model-serving service."""

from common.service import load_settings, serve
from model_serving_service.app import create_app
from model_serving_service.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings, "model-serving")
