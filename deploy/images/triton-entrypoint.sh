# Starts the wheel's tritonserver with the Python backend laid out by triton-layout.
# LD_LIBRARY_PATH: this interpreter's libpython first (the backend stub links
# libpython3.11.so.1.0; another build of 3.11 breaks every model load), then the
# wheel's own libraries.
set -eu
VENV=${VIRTUAL_ENV:-/opt/triton}
LIBDIR=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
WHEEL_LIBS=$(dirname "$(dirname "$(readlink -f "$VENV/tritonserver")")")/nvidia_pytriton.libs
export LD_LIBRARY_PATH="$LIBDIR:$WHEEL_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
mkdir -p /var/lib/prelabel/models
exec "$VENV/tritonserver/bin/tritonserver" --backend-directory="$VENV/backends" "$@"
