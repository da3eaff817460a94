"""Container healthcheck: exit 0 when every URL given answers 2xx within two seconds.

Baked into the images so a HEALTHCHECK's exec arguments contain no spaces (Podman's
Docker API splits them on spaces).
"""

import sys
import urllib.request


def main(urls: list[str]) -> int:
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if not 200 <= response.status < 300:
                    return 1
        except OSError as exc:
            print(f"{url}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
