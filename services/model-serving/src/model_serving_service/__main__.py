"""``python -m model_serving_service``: run the model-serving service."""

from common.service import load_settings, serve
from model_serving_service.app import create_app
from model_serving_service.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    # predict-now calls Triton with gRPC's asyncio client, which wants the standard loop.
    serve(create_app(settings), settings, "model-serving", loop="asyncio")
