"""``python -m dataset_service``: run the dataset service."""

from common.service import load_settings, serve
from dataset_service.app import create_app
from dataset_service.settings import Settings

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings, "dataset")
