# geoclim forecast service: `geoclim serve` (FastAPI + uvicorn) over exported .onnx models.
#
# The serving path imports numpy, pandas, xarray, onnxruntime and the web stack only, never
# torch, Lightning or Hydra, so the image installs geoclim without its training
# dependencies (--no-deps) plus exactly what serving needs: ~300 MB instead of ~2 GB.
#
#   docker build -t geoclim-serve .
#   docker run -p 8000:8000 -v $PWD/export:/models:ro -v $PWD/secrets:/secrets:ro \
#       geoclim-serve /models/model.onnx --keys /secrets/keys.json
#   # several models, or a registry:  ... geoclim-serve no2=/models/a.onnx pm25=/models/b.onnx
#   #                                  ... -v $PWD/registry:/registry:ro geoclim-serve \
#   #                                      no2_lstm --registry /registry --keys /secrets/keys.json
#   # keys: geoclim serve keygen <id> --keys secrets/keys.json   (prints the key once)

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY geoclim ./geoclim
COPY conf ./conf
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The `serve` extra of pyproject.toml, pinned to the versions the tests ran with.
RUN pip install \
        "numpy>=1.26,<3" "pandas>=2.2,<4" "xarray>=2024.10" "netCDF4>=1.7" \
        "onnxruntime>=1.20,<2" "fastapi>=0.115,<1" "uvicorn[standard]>=0.30,<1" \
        "prometheus-client>=0.20" "pyjwt>=2.8,<3" "python-multipart>=0.0.9"
COPY --from=build /wheels /wheels
RUN pip install --no-deps /wheels/geoclim-*.whl && rm -rf /wheels \
    && python -c "import sys, geoclim.serving.app, geoclim.cli.serve; \
assert 'torch' not in sys.modules"
RUN useradd --create-home --uid 10001 geoclim
USER 10001
WORKDIR /home/geoclim
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=30s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
ENTRYPOINT ["geoclim", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["/models/model.onnx", "--keys", "/secrets/keys.json"]
