# Lays out Triton's backend directory inside a venv holding nvidia-pytriton:
# <venv>/backends/python = the wheel's Python backend + the stub of this Python version,
# and <venv>/tritonserver -> the wheel's server directory. Run at image build time.
set -eu
VENV=$1
SERVER=$("$VENV/bin/python" -c 'import importlib.util, os; s = importlib.util.find_spec("pytriton"); print(os.path.join(list(s.submodule_search_locations)[0], "tritonserver"))')
VERSION=$("$VENV/bin/python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
mkdir -p "$VENV/backends/python"
cp -r "$SERVER"/backends/python/* "$VENV/backends/python/"
cp "$SERVER/python_backend_stubs/$VERSION/triton_python_backend_stub" "$VENV/backends/python/"
ln -sfn "$SERVER" "$VENV/tritonserver"
