"""``python -m annotation_service``: run the annotation service."""

from annotation_service.app import create_app
from annotation_service.settings import Settings
from common.service import load_settings, serve

if __name__ == "__main__":
    settings = load_settings(Settings)
    serve(create_app(settings), settings, "annotation")
