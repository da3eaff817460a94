"""``python -m prelabel_client``: the ``prelabel`` command line."""

from prelabel_client.cli import app

if __name__ == "__main__":
    app(prog_name="prelabel")
