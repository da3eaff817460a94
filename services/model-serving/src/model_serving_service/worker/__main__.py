"""``python -m model_serving_service.worker``: run one predict worker."""

import sys

from model_serving_service.worker import main

sys.exit(main())
